#!/usr/bin/env bash
# make fuzz: property-based tests of the HTTP API with schemathesis, driven by
# the OpenAPI document the API serves. A release build of `depman api` runs on
# a free port against a database and JetStream names of its own; schemathesis
# runs all its checks (server errors, statuses, content types, headers and
# bodies against the document, schema-invalid data rejected, schema-valid
# data accepted, ...) and any finding fails the run. Each finding comes with a
# curl command reproducing it.
# Knobs: FUZZ_SECONDS (schemathesis' time budget, default 240),
# FUZZ_QUICK=1 or --quick (budget 45 s and a fixed seed, for `make test`),
# FUZZ_PROFILE (release, or debug: the build `cargo test` made),
# FUZZ_MAX_EXAMPLES (test cases per operation and phase), FUZZ_SEED,
# FUZZ_WORKERS (default 1; see below), FUZZ_USER (the X-User-ID sent, default
# fuzz), FUZZ_PORT (default: a free one), FUZZ_REPORT_DIR (write schemathesis'
# junit report and the api's log there), FUZZ_RUST_LOG (the api's
# log filter, default info). Other arguments go to `schemathesis run`, e.g.
# --include-path-regex requests or --phases coverage.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. .devenv/env.sh

SCHEMATHESIS_VERSION=4.32.5
cache=${XDG_CACHE_HOME:-$HOME/.cache}/depman
venv=$cache/venv/schemathesis-$SCHEMATHESIS_VERSION

quick=${FUZZ_QUICK:-0}
if [[ ${1:-} == --quick ]]; then
  quick=1
  shift
fi
if [[ $quick == 1 ]]; then
  BUDGET=${FUZZ_SECONDS:-45}
  # The same cases every time, so that `make test` fails on a change, not on
  # the draw of the day; `make fuzz` draws anew.
  FUZZ_SEED=${FUZZ_SEED:-20261204}
else
  BUDGET=${FUZZ_SECONDS:-240}
fi
# One worker: with several, schemathesis' worker threads call ast.parse at
# once (Hypothesis describing its filters), which CPython 3.11 does not survive
# ("SystemError: AST constructor recursion depth mismatch", cpython#106905),
# and on two cores a second worker mostly competes with the api anyway.
WORKERS=${FUZZ_WORKERS:-1}
USER_ID=${FUZZ_USER:-fuzz}
work=$(mktemp -d)
hooks=$PWD/scripts

# Installed once per version, so a bump makes a new venv; the stamp is written
# last, so an interrupted install is redone rather than half used.
if [[ ! -f $venv/.installed ]]; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  touch "$venv/.installed"
fi

# A release build; FUZZ_PROFILE=debug takes the build `cargo test` just
# made, so that the short run inside `make test` compiles nothing.
if [[ ${FUZZ_PROFILE:-release} == debug ]]; then
  cargo build --locked --bin depman -q
  depman=${CARGO_TARGET_DIR:-target}/debug/depman
else
  cargo build --locked --release --bin depman -q
  depman=${CARGO_TARGET_DIR:-target}/release/depman
fi

# Fresh names per run, so runs never see each other's data or messages.
run="fuzz_$(date +%s)_$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
export DEPMAN_PREFIX=$run
database=$run
fuzz_url="${DATABASE_URL%/*}/$database"
port=${FUZZ_PORT:-$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
base="http://127.0.0.1:$port"

cleanup() {
  local rc=$?
  if [[ -n ${schemathesis_pid:-} ]]; then
    kill "$schemathesis_pid" 2>/dev/null || true
    wait "$schemathesis_pid" 2>/dev/null || true
  fi
  if [[ -n ${api_pid:-} ]]; then
    kill "$api_pid" 2>/dev/null || true
    wait "$api_pid" 2>/dev/null || true
  fi
  if [[ -n ${FUZZ_REPORT_DIR:-} && -f $work/api.log ]]; then
    cp "$work/api.log" "$FUZZ_REPORT_DIR/api.log" || true
  fi
  psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" || true
  for stream in requests sync dead_letters; do
    nats --server "$NATS_URL" stream rm -f "${DEPMAN_PREFIX}_$stream" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql -q "$DATABASE_URL" -c "CREATE DATABASE $database"
# A webhook key of its own, so that POST /api/v1/webhooks is fuzzed past
# its 503; no worker runs, so nothing is ever delivered. No rate limit, or
# most changes would be 429 (tests/api/limits.rs tests the limit).
DEPMAN_WEBHOOK_KEY=$(head -c 32 /dev/urandom | base64) \
DEPMAN_RATE_LIMIT=off DATABASE_URL=$fuzz_url DEPMAN_HTTP_ADDR=127.0.0.1:$port RUST_LOG=${FUZZ_RUST_LOG:-info} \
  "$depman" api >"$work/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 1 150); do
  curl -fs "$base/readyz" >/dev/null && break
  kill -0 "$api_pid" 2>/dev/null || { echo "depman api exited:" >&2; tail -n 20 "$work/api.log" >&2; exit 1; }
  sleep 0.2
done
curl -fs "$base/readyz" >/dev/null || { echo "depman api not ready after 30 s:" >&2; tail -n 20 "$work/api.log" >&2; exit 1; }

# schemathesis infers links between operations for its stateful phase from
# Location headers, naming the target by operationId: with an operationId
# used twice (OpenAPI requires them unique) the link points at the wrong
# operation and the whole phase stops with "Invalid OpenAPI Links
# Definition". So duplicates are a finding of their own, and until there are
# none only dependency analysis (response schemas to parameters) infers links.
curl -fs "$base/api-docs/openapi.json" >"$work/openapi.json"
duplicates=$("$venv/bin/python" - "$work/openapi.json" <<'EOF'
import collections, json, sys
document = json.load(open(sys.argv[1]))
users = collections.defaultdict(list)
for path, item in document.get("paths", {}).items():
    for method, operation in item.items():
        if isinstance(operation, dict) and "operationId" in operation:
            users[operation["operationId"]].append(f"{method.upper()} {path}")
for operation_id, where in users.items():
    if len(where) > 1:
        print(f"operationId `{operation_id}` is shared by: {', '.join(where)}")
EOF
)
if [[ -n $duplicates ]]; then
  inference='["dependency-analysis"]'
else
  inference='["location-headers", "dependency-analysis"]'
fi

# Nothing schemathesis or Hypothesis keeps between runs goes into the
# checkout: schemathesis runs from the scratch directory, with its own request
# cache off (its replays would reuse ids from databases dropped since) and
# Hypothesis' example database (the failing examples of earlier runs, tried
# first) under ~/.cache/depman. schemathesis 4 has no telemetry or upload to
# switch off: it only talks to $base.
mkdir -p "$cache/hypothesis"
cat >"$work/schemathesis.toml" <<EOF
[cache]
enabled = false

# The caller, through the document's security scheme, so that schemathesis
# knows which header is the caller and can leave it out on purpose.
[auth.openapi.caller]
api_key = "$USER_ID"

[phases.stateful.inference]
algorithms = $inference
EOF
# Every check but two whose premise the contract (section 3) denies:
# - ignored_auth: X-User-ID names the caller, it is no credential, so any
#   well-formed value is a user and "invalid credentials" do not exist (a
#   missing or malformed one is 401: tests/api/errors.rs);
# - use_after_free: DELETE /api/v1/deployments/requests/{id} records a
#   DELETE of the deployment; request {id} itself stays readable.
# The hooks excuse only the rules the document cannot state
# (scripts/fuzz_hooks.py).
args=(
  run "$base/api-docs/openapi.json"
  --checks all
  --exclude-checks ignored_auth,use_after_free
  --max-time "$BUDGET"
  --workers "$WORKERS"
  --continue-on-failure
  --request-timeout 10
  --generation-database "$cache/hypothesis/examples"
  --no-color
)
if [[ -n ${FUZZ_REPORT_DIR:-} ]]; then
  mkdir -p "$FUZZ_REPORT_DIR"
  args+=(--report junit --report-dir "$FUZZ_REPORT_DIR")
fi
[[ -n ${FUZZ_MAX_EXAMPLES:-} ]] && args+=(--max-examples "$FUZZ_MAX_EXAMPLES")
[[ -n ${FUZZ_SEED:-} ]] && args+=(--seed "$FUZZ_SEED")

echo "fuzzing $base (database and JetStream prefix $run) for up to ${BUDGET}s with schemathesis $SCHEMATHESIS_VERSION"
started=$(date +%s)
rc=0
# In the background and waited for, so that a signal to this script stops it
# at once (cleanup kills it) rather than after its budget.
(cd "$work" && HYPOTHESIS_STORAGE_DIRECTORY="$cache/hypothesis" \
  PYTHONPATH="$hooks" SCHEMATHESIS_HOOKS=fuzz_hooks \
  exec "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" "${args[@]}" "$@") &
schemathesis_pid=$!
wait "$schemathesis_pid" || rc=$?
schemathesis_pid=
elapsed=$(($(date +%s) - started))

# What the server saw: the requests it answered by status, and the causes of
# its 500s as its log gives them.
answered=$(curl -fs "$base/metrics" | awk '/^[a-z_]*http_requests_total\{/ {
  match($0, /status="[0-9]+"/); s = substr($0, RSTART + 8, 3); n[s] += $NF; total += $NF }
  END { printf "%d (", total; sep = ""; for (s in n) { printf "%s%s: %d", sep, s, n[s]; sep = ", " } printf ")" }')
echo
echo "schemathesis ran for ${elapsed}s; the api answered $answered requests"
"$venv/bin/python" - "$work/api.log" <<'EOF'
import collections, json, sys
causes = collections.Counter()
for line in open(sys.argv[1], errors="replace"):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    if entry.get("level") == "ERROR" and "error" in entry:
        causes[entry["error"].splitlines()[0][:200]] += 1
if causes:
    print("errors the api logged:")
    for cause, count in causes.most_common(10):
        print(f"  {count:5d} x {cause}")
EOF
if [[ -n $duplicates ]]; then
  echo "the OpenAPI document repeats operationIds (they must be unique):"
  sed 's/^/  /' <<<"$duplicates"
  if ((rc == 0)); then rc=1; fi
fi
if [[ $rc != 0 ]]; then
  echo "make fuzz: findings above (exit $rc)" >&2
fi
exit "$rc"
