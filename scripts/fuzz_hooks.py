"""schemathesis hooks for `make fuzz` (loaded through SCHEMATHESIS_HOOKS).

The OpenAPI document carries every rule of a single field, so a schema-valid
request that depman refuses is a finding (ST202), with two kinds of
exception the document cannot express, and only those:

- rules between fields: a port/protocol pair or a port name given twice,
  a resource request above its limit (docs/api.md lists them);
- rules between requests: an X-Request-ID used before for another request
  (`idempotency-key-reused`), which a fuzzer reusing short keys hits at
  once, and a `cursor`, `after` or `Last-Event-ID` that no earlier answer
  returned (cursors and event ids are opaque);
- rules of the world: a webhook `url` must resolve, to public addresses
  only (checked against DNS, which no schema can state).

Each is excused only when the answer is that very problem; the summary
counts the failures these hooks dropped.

One server error is excused too: `503 dry-run-unavailable`, the documented
answer to `?dry_run=true` when no worker runs. No worker runs here (it would
apply the fuzz's CREATEs to the local cluster); dry runs answered by a real
worker are tested in tests/worker/dry_run.rs.
"""

import atexit
import collections
import itertools
import json
import re
import sys

import schemathesis

REQUEST_ID = re.compile(r"^[A-Za-z0-9._@-]{1,128}$")
WAIT = re.compile(r"^([0-9]{1,6})(ms|s)?$")
# The longest `wait` a case may ask for: a read that waits its full 60 s
# would only stall the run (waiting is tested in tests/worker/wait.rs).
LONGEST_WAIT_MS = 500
_keys = itertools.count()
_excused_counts = collections.Counter()


@atexit.register
def _report():
    if _excused_counts:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in _excused_counts.most_common())
        print(f"excused: {reasons}", file=sys.stderr)

# (field prefix, words of the message) of the validation errors excused.
EXCUSED_ERRORS = (
    ("ports[", "is given twice"),
    ("resources.requests.", "must not exceed resources.limits."),
    ("cursor", "is not a cursor this API returned"),
    ("after", "is not an event id this API returned"),
    ("before", "is not an event id this API returned"),
    ("Last-Event-ID", "is not an event id this API returned"),
    ("url", "must be an absolute http or https URL"),
    ("url", "cannot be resolved"),
    ("url", "resolves to"),
    ("url", "must not carry credentials"),
)


def _excused_error(error):
    field, message = error.get("field", ""), error.get("message", "")
    return next(
        (f"{prefix}… {words}" for prefix, words in EXCUSED_ERRORS
         if field.startswith(prefix) and words in message),
        None,
    )


def _problem(response):
    try:
        return json.loads(response.content)
    except (ValueError, TypeError):
        return None


def _excuse(problem):
    """Why `problem` is excused, or None."""
    if not isinstance(problem, dict) or problem.get("status") != 422:
        return None
    if problem.get("code") == "idempotency-key-reused":
        return "X-Request-ID used for another request"
    errors = problem.get("errors") or []
    if problem.get("code") != "validation-failed" or not errors:
        return None
    reasons = [_excused_error(error) for error in errors]
    return None if None in reasons else reasons[0]


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but a schema-valid request refused by a rule the
    schema cannot state."""
    if response is None:
        return True
    if failure.code == "ST101":
        problem = _problem(response)
        if isinstance(problem, dict) and problem.get("code") == "dry-run-unavailable":
            _excused_counts["dry run without a worker"] += 1
            return False
        return True
    if failure.code != "ST202":
        return True
    reason = _excuse(_problem(response))
    if reason is None:
        return True
    _excused_counts[reason] += 1
    return False


@schemathesis.hook
def before_call(context, case, **kwargs):
    """Asks /api/v1/events for a JSON page, never a stream (a stream does
    not end: tests/api/events.rs tests it); cuts well-formed waits to half
    a second, and makes each well-formed
    X-Request-ID unique, as a client's keys are:
    otherwise most PATCH and DELETE cases would reuse a short key and be
    refused before reaching anything else (replays are tested in
    tests/api/create.rs and tests/api/changes.rs). Malformed keys are sent
    as generated."""
    if case.path == "/api/v1/events":
        case.headers = {**(case.headers or {}), "Accept": "application/json"}
    wait = (case.query or {}).get("wait")
    match = WAIT.match(wait) if isinstance(wait, str) else None
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        if amount * (1 if unit == "ms" else 1000) > LONGEST_WAIT_MS:
            case.query["wait"] = f"{LONGEST_WAIT_MS}ms"
    key = (case.headers or {}).get("X-Request-ID")
    if isinstance(key, str) and REQUEST_ID.match(key):
        case.headers["X-Request-ID"] = f"{key[:100]}.{next(_keys)}"
