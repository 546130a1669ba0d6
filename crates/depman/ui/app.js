// The depman dashboard: one module, no framework and no build step
// (docs/design-decisions.md, "Dashboard"). It speaks only the public API of
// the api that serves it. Everything it shows from the API goes into the
// page as text (the `h` helper), never as markup.

const API = "/api/v1";
const PAGE_SIZE = 50;

// ---------------------------------------------------------------- identity

// `header`: the user id goes in X-User-ID (kept in localStorage, asked
// once); `jwt`: a bearer token (kept for this tab only).
let authMode = "header";

function keeper() {
  return authMode === "jwt"
    ? { store: sessionStorage, key: "depman.token" }
    : { store: localStorage, key: "depman.user" };
}

function credential() {
  const { store, key } = keeper();
  return store.getItem(key);
}

function signIn(value) {
  const { store, key } = keeper();
  store.setItem(key, value);
}

function signOut(reason) {
  const { store, key } = keeper();
  store.removeItem(key);
  signInReason = reason || "";
  route();
}

let signInReason = "";

function authHeaders() {
  const value = credential();
  if (!value) return {};
  return authMode === "jwt" ? { Authorization: `Bearer ${value}` } : { "X-User-ID": value };
}

// Who the token says the caller is, for display only (the api checks it).
function displayName() {
  const value = credential();
  if (authMode !== "jwt") return value;
  try {
    const payload = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload));
    return claims.email || claims.sub || "token";
  } catch {
    return "token";
  }
}

// ------------------------------------------------------------------- the API

class Problem extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `the server answered ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.errors = (body && body.errors) || [];
  }
}

// An idempotency key for one change: the same for every retry of it.
function newRequestId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "ui-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function apiUrl(path, query = {}) {
  const url = new URL(API + path, location.origin);
  for (const [name, value] of Object.entries(query)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== undefined && one !== null && one !== "") url.searchParams.append(name, one);
    }
  }
  return url;
}

async function call(method, path, { body, query, requestId } = {}) {
  const headers = { ...authHeaders(), Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (requestId) headers["X-Request-ID"] = requestId;
  let response;
  try {
    response = await fetch(apiUrl(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new Problem(0, { detail: "depman cannot be reached; check the connection and try again" });
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (response.status === 401) {
    signOut((json && json.detail) || "sign in again");
    throw new Problem(401, json);
  }
  if (!response.ok) throw new Problem(response.status, json);
  return json;
}

// ------------------------------------------------------- the live event feed

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function setLive(state) {
  const live = document.getElementById("live");
  live.dataset.state = state;
  live.textContent = { live: "Live", reconnecting: "Reconnecting…", off: "" }[state];
}

// Follows the caller's events (Server-Sent Events read through fetch, so
// that the same headers as every call go along) from `after`, or from now.
// A dropped connection resumes after the last event seen, so nothing is
// missed or shown twice. Returns the function that stops it.
function follow({ identifier, types, after, onEvent, onExpired }) {
  const controller = new AbortController();
  let last = after;
  let delay = 1000;
  const handle = (frame) => {
    let id = null;
    const data = [];
    for (const line of frame.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") id = value;
      if (field === "data") data.push(value);
    }
    if (id) last = id;
    if (data.length === 0) return;
    const event = JSON.parse(data.join("\n"));
    if (event) onEvent(event);
  };
  (async () => {
    while (!controller.signal.aborted) {
      try {
        const headers = { ...authHeaders(), Accept: "text/event-stream" };
        if (last) headers["Last-Event-ID"] = last;
        const response = await fetch(apiUrl("/events", { identifier, type: types }), {
          headers,
          signal: controller.signal,
        });
        if (response.status === 410) {
          setLive("off");
          onExpired();
          return;
        }
        if (response.status === 401) return signOut("sign in again");
        if (!response.ok || !response.body) throw new Error(`events answered ${response.status}`);
        setLive("live");
        delay = 1000;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            handle(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch {
        // A dropped connection, or a stop: the loop tells them apart.
      }
      if (controller.signal.aborted) return;
      setLive("reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  })();
  return () => {
    controller.abort();
    setLive("off");
  };
}

// Collects the identifiers events name and calls `flush` with them once a
// burst is over: a rollout's events come in quick succession.
function batcher(flush, wait = 150) {
  const pending = new Set();
  let timer = null;
  return (identifier) => {
    pending.add(identifier);
    clearTimeout(timer);
    timer = setTimeout(() => {
      const identifiers = [...pending];
      pending.clear();
      flush(identifiers).catch(showError);
    }, wait);
  };
}

// ------------------------------------------------------------------ the page

function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const main = () => document.getElementById("view");

// Puts `children` in `parent` in place of what it had; `null` and `false`
// stand for nothing (the DOM's own replaceChildren would show "null").
function put(parent, ...children) {
  parent.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function showError(error) {
  const banner = h("p", { class: "banner error", role: "alert" }, error.message || String(error));
  main().prepend(banner);
  setTimeout(() => banner.remove(), 8000);
}

function when(timestamp) {
  if (!timestamp) return "—";
  const date = new Date(timestamp);
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  const text =
    seconds < 60 ? `${Math.max(seconds, 0)} s ago`
    : seconds < 3600 ? `${Math.round(seconds / 60)} min ago`
    : seconds < 86400 ? `${Math.round(seconds / 3600)} h ago`
    : date.toLocaleDateString();
  return h("time", { datetime: timestamp, title: date.toLocaleString() }, text);
}

// Health in colour and in words, so that colour is never the only sign.
const HEALTH = {
  HEALTHY: "✓",
  PROGRESSING: "↻",
  DEGRADED: "✕",
  MISSING: "?",
};

function healthBadge(health) {
  return h("span", { class: `badge health-${health}` }, `${HEALTH[health] || ""} ${health}`);
}

function stateBadge(state) {
  return h("span", { class: `badge state-${state}` }, state);
}

// What a failure reason code means, in words.
const REASONS = {
  ErrImagePull: "The image could not be pulled",
  ImagePullBackOff: "The image could not be pulled",
  InvalidImageName: "The image name is not valid",
  CrashLoopBackOff: "The container keeps crashing",
  CreateContainerConfigError: "The container's configuration cannot be used (a missing Secret or ConfigMap?)",
  Unschedulable: "No node can run the pods",
  QuotaExceeded: "A resource quota refused the pods",
  ProgressDeadlineExceeded: "The rollout made no progress within its deadline",
  RolloutTimeout: "The rollout did not finish in time",
  DeploymentDeleted: "The Deployment was deleted before the rollout ended",
};

function reasonText(reason) {
  return reason ? `${REASONS[reason] || reason} (${reason})` : "";
}

// A diff from a dry run: each leaf that would change.
function diffTable(preview) {
  const warnings = (preview.warnings || []).map((w) =>
    h("p", { class: "banner warning", role: "note" }, `Kubernetes warns: ${w}`),
  );
  if (preview.diff.length === 0) {
    return h("div", { class: "diff" }, warnings, h("p", {}, "No change: the cluster already has this."));
  }
  const show = (value) => (value === null ? "—" : typeof value === "string" ? value : JSON.stringify(value));
  return h(
    "div",
    { class: "diff" },
    warnings,
    h(
      "table",
      {},
      h("caption", {}, `${preview.diff.length} change${preview.diff.length === 1 ? "" : "s"}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Now"), h("th", { scope: "col" }, "After"))),
      h(
        "tbody",
        {},
        preview.diff.map((d) =>
          h(
            "tr",
            {},
            h("td", { "data-label": "Field" }, h("code", {}, d.path)),
            h("td", { "data-label": "Now", class: "before" }, show(d.before)),
            h("td", { "data-label": "After", class: "after" }, show(d.after)),
          ),
        ),
      ),
    ),
  );
}

// A modal dialog: `body` and a confirm button that runs `confirm`; it
// stays open with the error when that fails.
function dialog({ title, body, confirmLabel, danger, confirm }) {
  const error = h("p", { class: "error", role: "alert" });
  const confirmButton = h("button", { type: "button", class: danger ? "danger" : "primary" }, confirmLabel);
  const box = h(
    "dialog",
    { "aria-labelledby": "dialog-title" },
    h("h2", { id: "dialog-title" }, title),
    body,
    error,
    h("div", { class: "actions" }, confirmButton, h("button", { type: "button", onclick: () => box.close() }, "Cancel")),
  );
  confirmButton.addEventListener("click", async () => {
    confirmButton.disabled = true;
    error.textContent = "";
    try {
      await confirm();
      box.close();
    } catch (e) {
      error.textContent = e.message;
      confirmButton.disabled = false;
    }
  });
  box.addEventListener("close", () => box.remove());
  document.body.append(box);
  box.showModal();
  return box;
}

// -------------------------------------------------------------------- forms

// A labelled input with its hint and a place for its error, which the
// server's field errors find by `data-field`.
function field(label, name, input, hint) {
  const id = `field-${name.replace(/[^a-z0-9]/gi, "-")}`;
  input.id = id;
  input.name = name;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  input.setAttribute("aria-describedby", `${hintId} ${errorId}`);
  // The browser's checks as hints while typing; the server has the last word.
  input.addEventListener("input", () => {
    const error = document.getElementById(errorId);
    const invalid = input.validity && !input.validity.valid;
    error.textContent = invalid ? hint : "";
    input.toggleAttribute("aria-invalid", invalid);
  });
  return h(
    "div",
    { class: "field", "data-field": name },
    h("label", { for: id }, label),
    input,
    h("small", { id: hintId, class: "hint" }, hint),
    h("p", { id: errorId, class: "error field-error", "aria-live": "polite" }),
  );
}

// Shows each field error next to the field it names (`resources.limits.cpu`
// goes to that input, `ports[1].name` to the ports), the rest above.
function showFieldErrors(form, problem) {
  form.querySelectorAll(".field-error").forEach((e) => (e.textContent = ""));
  form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
  const general = form.querySelector(".form-error");
  general.textContent = "";
  const unplaced = [];
  for (const { field: name, message } of problem.errors) {
    const target =
      form.querySelector(`[data-field="${CSS.escape(name)}"]`) ||
      form.querySelector(`[data-field="${CSS.escape(name.split(/[.[]/)[0])}"]`);
    if (!target) {
      unplaced.push(`${name}: ${message}`);
      continue;
    }
    const error = target.querySelector(".field-error");
    error.textContent = error.textContent ? `${error.textContent}; ${message}` : `${name}: ${message}`;
    target.querySelector("input, textarea, select").setAttribute("aria-invalid", "true");
  }
  if (problem.errors.length === 0 || unplaced.length) {
    general.textContent = [problem.message, ...unplaced].join(" — ");
  }
  const first = form.querySelector("[aria-invalid]");
  if (first) first.focus();
}

// KEY=VALUE lines into an object, and back.
function parsePairs(text) {
  const pairs = {};
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (!trimmed) continue;
    const equals = trimmed.indexOf("=");
    if (equals < 0) pairs[trimmed] = "";
    else pairs[trimmed.slice(0, equals).trim()] = trimmed.slice(equals + 1);
  }
  return pairs;
}

const showPairs = (pairs) => Object.entries(pairs || {}).map(([k, v]) => `${k}=${v}`).join("\n");
const lines = (text) => text.split("\n").map((l) => l.trim()).filter(Boolean);

// `8080`, `8080/UDP`, `8080 http` or `8080/TCP http`, one per line.
function parsePorts(text) {
  return lines(text).map((line) => {
    const [port, name] = line.split(/\s+/);
    const [number, protocol] = port.split("/");
    const parsed = { container_port: Number(number) };
    if (protocol) parsed.protocol = protocol.toUpperCase();
    if (name) parsed.name = name;
    return parsed;
  });
}

const showPorts = (ports) =>
  (ports || []).map((p) => `${p.container_port}${p.protocol ? "/" + p.protocol : ""}${p.name ? " " + p.name : ""}`).join("\n");

function resourceInputs(resources = {}) {
  const value = (kind, name) => (resources[kind] && resources[kind][name]) || "";
  const input = (kind, name, example) =>
    field(
      `${kind === "requests" ? "Request" : "Limit"}: ${name}`,
      `resources.${kind}.${name}`,
      h("input", { value: value(kind, name), placeholder: example, pattern: "^[0-9.]+[a-zA-Z]*$" }),
      `a Kubernetes quantity, like ${example}`,
    );
  return h(
    "fieldset",
    { class: "resources" },
    h("legend", {}, "Resources"),
    input("requests", "cpu", "250m"),
    input("requests", "memory", "128Mi"),
    input("limits", "cpu", "1"),
    input("limits", "memory", "256Mi"),
  );
}

function readResources(form) {
  const resources = {};
  for (const kind of ["requests", "limits"]) {
    for (const name of ["cpu", "memory"]) {
      const value = form.elements[`resources.${kind}.${name}`].value.trim();
      if (value) (resources[kind] ||= {})[name] = value;
    }
  }
  return resources;
}

const DNS_LABEL = "^[a-z0-9]([\\-a-z0-9]*[a-z0-9])?$";

// ------------------------------------------------------------------- sign-in

function signInView(view) {
  const jwt = authMode === "jwt";
  const input = jwt
    ? h("textarea", { rows: 4, required: true, autocomplete: "off", spellcheck: "false" })
    : h("input", { required: true, pattern: "^[A-Za-z0-9._@\\-]{1,128}$", autocomplete: "username" });
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    h("h1", {}, "Sign in"),
    signInReason ? h("p", { class: "banner error", role: "alert" }, signInReason) : null,
    field(
      jwt ? "Bearer token" : "User id",
      "credential",
      input,
      jwt ? "an ID token from your identity provider" : "1 to 128 letters, digits and . _ @ -",
    ),
    h("p", { class: "error form-error", role: "alert" }),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value || !input.validity.valid) {
      form.querySelector(".form-error").textContent = jwt ? "Paste a token." : "Give a user id of 1 to 128 letters, digits and . _ @ -";
      return;
    }
    signIn(value);
    signInReason = "";
    route();
  });
  put(view, form);
  input.focus();
}

// ------------------------------------------------------ page: deployments

const STATUSES = ["INITIATED", "UPDATING", "CREATED", "DELETED", "FAILED"];

// Kept while the tab lives, so that coming back keeps the filters.
const listState = { search: "", namespace: "", status: "", cursors: [null] };

function deploymentsView(view, stops) {
  const tbody = h("tbody");
  const summary = h("p", { class: "summary", role: "status" });
  const previous = h("button", { type: "button" }, "← Newer");
  const next = h("button", { type: "button" }, "Older →");
  let page = { items: [], next_cursor: null };

  const matches = (d) =>
    (!listState.status || d.status === listState.status) &&
    (!listState.namespace || d.namespace === listState.namespace) &&
    (!listState.search || d.identifier.includes(listState.search.toLowerCase()));

  const row = (d) =>
    h(
      "tr",
      { "data-identifier": d.identifier },
      h("td", { "data-label": "Name" }, h("a", { href: `#/d/${d.identifier}` }, d.identifier)),
      h("td", { "data-label": "Namespace" }, d.namespace),
      h("td", { "data-label": "Image", class: "image" }, d.image),
      h("td", { "data-label": "Ready", class: "ready" }, `${d.ready_replicas ?? 0}/${d.replicas ?? 0}`),
      h("td", { "data-label": "Status", class: "status" }, d.status),
      h("td", { "data-label": "Health", class: "health" }, healthBadge(d.health)),
      h("td", { "data-label": "Reason", class: "reason" }, reasonText(d.health_reason)),
      h("td", { "data-label": "Last change" }, when(d.updated_on)),
    );

  const render = () => {
    put(tbody, ...page.items.map(row));
    const pageNumber = listState.cursors.length;
    summary.textContent =
      page.items.length === 0
        ? "No deployments match."
        : `Page ${pageNumber}: ${page.items.length} deployment${page.items.length === 1 ? "" : "s"}`;
    previous.disabled = pageNumber === 1;
    next.disabled = !page.next_cursor;
  };

  const load = async () => {
    page = await call("GET", "/deployments", {
      query: {
        search: listState.search,
        namespace: listState.namespace,
        status: listState.status,
        limit: PAGE_SIZE,
        cursor: listState.cursors.at(-1),
      },
    });
    render();
  };

  // An event names a deployment: show its new state where it is listed,
  // and put a new one on top of the first page.
  const refresh = batcher(async (identifiers) => {
    for (const identifier of identifiers) {
      const index = page.items.findIndex((d) => d.identifier === identifier);
      if (index < 0 && listState.cursors.length > 1) continue;
      let deployment;
      try {
        deployment = await call("GET", `/deployments/${identifier}`);
      } catch (e) {
        if (e.status === 404) continue;
        throw e;
      }
      if (index >= 0) page.items[index] = deployment;
      else if (matches(deployment)) page.items.unshift(deployment);
    }
    render();
  });

  const restart = () => {
    listState.cursors = [null];
    load().catch(showError);
  };
  const search = h("input", { type: "search", value: listState.search, maxlength: 63, placeholder: "part of a name" });
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      listState.search = search.value.trim();
      restart();
    }, 250);
  });
  const namespace = h("input", { value: listState.namespace, pattern: DNS_LABEL, maxlength: 63, placeholder: "all" });
  namespace.addEventListener("change", () => {
    listState.namespace = namespace.value.trim();
    restart();
  });
  const status = h(
    "select",
    {},
    h("option", { value: "" }, "all"),
    STATUSES.map((s) => h("option", { value: s, selected: s === listState.status }, s)),
  );
  status.addEventListener("change", () => {
    listState.status = status.value;
    restart();
  });
  previous.addEventListener("click", () => {
    listState.cursors.pop();
    load().catch(showError);
  });
  next.addEventListener("click", () => {
    listState.cursors.push(page.next_cursor);
    load().catch(showError);
  });

  put(
    view,
    h("h1", {}, "Deployments"),
    h(
      "form",
      { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      field("Search by name", "search", search, "part of the identifier"),
      field("Namespace", "namespace", namespace, "a namespace name"),
      field("Status", "status", status, "the deployment's status"),
    ),
    summary,
    h(
      "table",
      { class: "deployments" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Name", "Namespace", "Image", "Ready", "Status", "Health", "Reason", "Last change"].map((c) =>
            h("th", { scope: "col" }, c),
          ),
        ),
      ),
      tbody,
    ),
    h("nav", { class: "pager", "aria-label": "Pages of deployments" }, previous, next),
  );
  stops.push(follow({ onEvent: (e) => refresh(e.identifier), onExpired: () => route() }));
  return load();
}

// ------------------------------------------------------- page: deployment

function deploymentView(view, stops, identifier) {
  const state = { deployment: null, requests: [], revisions: [] };
  const sections = {
    head: h("header", { class: "deployment-head" }),
    live: h("section", { "aria-labelledby": "live-title" }),
    rollout: h("section", { "aria-labelledby": "rollout-title" }),
    requests: h("section", { "aria-labelledby": "requests-title" }),
    history: h("section", { "aria-labelledby": "history-title" }),
  };

  const load = async () => {
    const [deployment, requests, revisions] = await Promise.all([
      call("GET", `/deployments/${identifier}`),
      call("GET", "/deployments/requests", { query: { identifier, limit: 10 } }),
      call("GET", `/deployments/${identifier}/revisions`, { query: { limit: 20 } }),
    ]);
    Object.assign(state, { deployment, requests: requests.items, revisions: revisions.items });
    render();
  };

  const newest = () => state.requests[0];
  const current = () => state.requests.find((r) => r.request_type !== "DELETE" && r.rollout);
  const gone = () => ["DELETED", "FAILED"].includes(state.deployment.status);

  const render = () => {
    const d = state.deployment;
    put(
      sections.head,
      h("p", {}, h("a", { href: "#/" }, "← Deployments")),
      h("h1", {}, d.identifier),
      h(
        "p",
        { class: "badges" },
        h("span", { class: "status" }, d.status),
        " ",
        healthBadge(d.health),
      ),
      d.health_reason
        ? h("p", { class: "banner error reason", role: "status" }, reasonText(d.health_reason), h("br"), d.health_message || "")
        : null,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: edit, disabled: gone() || !newest() }, "Edit"),
        h("button", { type: "button", class: "danger", onclick: remove, disabled: gone() || !newest() }, "Delete"),
      ),
    );
    put(
      sections.live,
      h("h2", { id: "live-title" }, "Live state"),
      h(
        "dl",
        { class: "facts" },
        [
          ["Namespace", d.namespace],
          ["Image", d.image],
          ["Replicas", `${d.ready_replicas ?? 0} ready, ${d.available_replicas ?? 0} available, ${d.updated_replicas ?? 0} updated, ${d.replicas ?? 0} desired`],
          ["Generation", `${d.observed_generation ?? "—"} observed of ${d.generation ?? "—"}`],
          ["Created", when(d.created_on)],
          ["Last change", when(d.updated_on)],
        ].map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
      ),
      d.conditions.length
        ? h(
            "table",
            { class: "conditions" },
            h("caption", {}, "Conditions"),
            h("thead", {}, h("tr", {}, ["Type", "Status", "Reason", "Message"].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              d.conditions.map((c) =>
                h(
                  "tr",
                  {},
                  h("td", { "data-label": "Type" }, c.type),
                  h("td", { "data-label": "Status" }, c.status),
                  h("td", { "data-label": "Reason" }, c.reason || ""),
                  h("td", { "data-label": "Message" }, c.message || ""),
                ),
              ),
            ),
          )
        : null,
    );
    put(sections.rollout, h("h2", { id: "rollout-title" }, "Rollout"), rolloutView(current()));
    put(sections.requests, h("h2", { id: "requests-title" }, "Recent requests"), requestsTable());
    put(sections.history, h("h2", { id: "history-title" }, "Revisions"), historyTable());
  };

  const requestsTable = () => {
    if (state.requests.length === 0) return h("p", {}, "None.");
    return h(
      "table",
      { class: "requests" },
      h("thead", {}, h("tr", {}, ["Type", "Status", "Image", "Outcome", "Accepted", ""].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        state.requests.map((r) =>
          h(
            "tr",
            { "data-request": r.id },
            h("td", { "data-label": "Type" }, r.request_type, r.rolled_back_to ? ` (rollback to ${r.rolled_back_to})` : ""),
            h("td", { "data-label": "Status" }, r.status === "CREATED" ? "WAITING" : r.status),
            h("td", { "data-label": "Image", class: "image" }, r.image),
            h("td", { "data-label": "Outcome" }, outcome(r)),
            h("td", { "data-label": "Accepted" }, when(r.created_on)),
            h(
              "td",
              {},
              r.status === "CREATED"
                ? h("button", { type: "button", onclick: () => cancel(r), "aria-label": `Cancel the ${r.request_type} request` }, "Cancel")
                : null,
            ),
          ),
        ),
      ),
    );
  };

  const historyTable = () => {
    if (state.revisions.length === 0) return h("p", {}, "No revision yet.");
    const latest = state.revisions[0].revision;
    return h(
      "table",
      { class: "revisions" },
      h("thead", {}, h("tr", {}, ["Revision", "Image", "Replicas", "Outcome", "Applied", "By", ""].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        state.revisions.map((r) =>
          h(
            "tr",
            { "data-revision": r.revision },
            h("td", { "data-label": "Revision" }, `${r.revision}`, r.revision === latest ? " (current)" : "", r.rolled_back_to ? ` ← ${r.rolled_back_to}` : ""),
            h("td", { "data-label": "Image", class: "image" }, r.spec.image),
            h("td", { "data-label": "Replicas" }, `${r.spec.replicas}`),
            h("td", { "data-label": "Outcome" }, r.rollout ? [stateBadge(r.rollout.state), " ", reasonText(r.rollout.reason)] : "—"),
            h("td", { "data-label": "Applied" }, when(r.applied_on)),
            h("td", { "data-label": "By" }, r.actor),
            h(
              "td",
              {},
              gone()
                ? null
                : h("button", { type: "button", onclick: () => rollback(r.revision), "aria-label": `Roll back to revision ${r.revision}` }, "Roll back"),
            ),
          ),
        ),
      ),
    );
  };

  const cancel = async (request) => {
    try {
      await call("POST", `/deployments/requests/${request.id}/cancel`);
      await load();
    } catch (e) {
      showError(e);
    }
  };

  // The dry run's diff first, then the change itself under one key.
  const previewThenApply = async ({ title, confirmLabel, danger, send, onProblem }) => {
    let preview;
    try {
      preview = await send({ dryRun: true });
    } catch (e) {
      if (onProblem && e.errors.length) return onProblem(e);
      return showError(e);
    }
    const requestId = newRequestId();
    dialog({
      title,
      body: diffTable(preview),
      confirmLabel,
      danger,
      confirm: async () => {
        await send({ dryRun: false, requestId });
        await load();
      },
    });
  };

  const rollback = (revision) =>
    previewThenApply({
      title: `Roll back ${identifier} to revision ${revision}`,
      confirmLabel: "Roll back",
      send: ({ dryRun, requestId }) =>
        call("POST", `/deployments/${identifier}/rollback`, {
          body: { revision },
          query: { dry_run: dryRun || undefined },
          requestId,
        }),
    });

  const remove = () =>
    previewThenApply({
      title: `Delete ${identifier}?`,
      confirmLabel: "Delete",
      danger: true,
      send: ({ dryRun, requestId }) =>
        call("DELETE", `/deployments/requests/${newest().id}`, { query: { dry_run: dryRun || undefined }, requestId }),
    });

  const edit = () => {
    const spec = newest().spec;
    const image = h("input", { value: spec.image, required: true, maxlength: 512 });
    const replicas = h("input", { type: "number", min: 0, max: 1000, value: spec.replicas, required: true });
    const env = h("textarea", { rows: 4, spellcheck: "false" }, showPairs(spec.env));
    const form = h(
      "form",
      { class: "card edit", novalidate: true, "aria-labelledby": "edit-title" },
      h("h2", { id: "edit-title" }, `Edit ${identifier}`),
      field("Image", "image", image, "an image reference, like nginx:1.27"),
      field("Replicas", "replicas", replicas, "0 to 1000"),
      field("Environment", "env", env, "KEY=value, one per line"),
      resourceInputs(spec.resources),
      h("p", { class: "error form-error", role: "alert" }),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary" }, "Preview changes"),
        h("button", { type: "button", onclick: () => form.remove() }, "Close"),
      ),
    );
    // Only what the form changed goes in the PATCH.
    const patch = () => {
      const body = {};
      if (image.value.trim() !== spec.image) body.image = image.value.trim();
      if (Number(replicas.value) !== spec.replicas) body.replicas = replicas.value === "" ? null : Number(replicas.value);
      const newEnv = parsePairs(env.value);
      if (JSON.stringify(newEnv) !== JSON.stringify(spec.env || {})) body.env = newEnv;
      const resources = readResources(form);
      if (JSON.stringify(resources) !== JSON.stringify(spec.resources || {})) body.resources = resources;
      return body;
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = patch();
      previewThenApply({
        title: `Apply these changes to ${identifier}?`,
        confirmLabel: "Apply",
        send: async ({ dryRun, requestId }) => {
          const answer = await call("PATCH", `/deployments/requests/${newest().id}`, {
            body,
            query: { dry_run: dryRun || undefined },
            requestId,
          });
          if (!dryRun) form.remove();
          return answer;
        },
        onProblem: (problem) => showFieldErrors(form, problem),
      });
    });
    sections.head.after(form);
    image.focus();
  };

  put(view, sections.head, sections.rollout, sections.live, sections.requests, sections.history);
  const refresh = batcher(() => load());
  stops.push(follow({ identifier, onEvent: () => refresh(identifier), onExpired: () => route() }));
  return load();
}

// The rollout of a request: a progress bar of updated, ready and desired
// replicas, its state and, when it failed, why in words.
function rolloutView(request) {
  if (!request) return h("p", {}, "No rollout yet.");
  const r = request.rollout;
  const desired = Math.max(r.desired_replicas, 0);
  const percent = (n) => (desired === 0 ? 100 : Math.min(100, Math.round((100 * n) / desired)));
  const bar = (label, n, kind) =>
    h(
      "div",
      { class: "meter" },
      h("span", { class: "meter-label" }, `${label}: ${n}/${desired}`),
      h(
        "div",
        {
          class: `meter-track ${kind}`,
          role: "progressbar",
          "aria-label": `${label} replicas`,
          "aria-valuemin": 0,
          "aria-valuemax": desired,
          "aria-valuenow": n,
        },
        h("div", { class: "meter-fill", "data-percent": percent(n) }),
      ),
    );
  const box = h(
    "div",
    { class: `rollout rollout-${r.state}` },
    h("p", {}, stateBadge(r.state), ` generation ${r.generation}, started `, when(r.started_on), r.finished_on ? [", ended ", when(r.finished_on)] : ""),
    bar("Updated", r.updated_replicas, "updated"),
    bar("Ready", r.ready_replicas, "ready"),
    bar("Available", r.available_replicas, "available"),
    r.reason ? h("p", { class: "banner error", role: "status" }, reasonText(r.reason), h("br"), r.message || "") : null,
  );
  // Widths through the CSS object model: the page's policy allows no
  // inline style attributes.
  box.querySelectorAll(".meter-fill").forEach((fill) => (fill.style.width = `${fill.dataset.percent}%`));
  return box;
}

function outcome(request) {
  if (request.status === "FAILURE") return [stateBadge("FAILURE"), " ", request.failure_reason || ""];
  if (request.rollout) return [stateBadge(request.rollout.state), " ", reasonText(request.rollout.reason)];
  return request.status === "SUCCESS" ? stateBadge("SUCCESS") : "—";
}

// ----------------------------------------------------------- page: create

function createView(view) {
  const input = (attributes) => h("input", attributes);
  const area = (rows) => h("textarea", { rows, spellcheck: "false" });
  const form = h(
    "form",
    { class: "card create", novalidate: true, "aria-labelledby": "create-title" },
    h("h1", { id: "create-title" }, "Create a deployment"),
    h("div", { class: "grid" },
      field("Name", "name", input({ required: true, pattern: DNS_LABEL, maxlength: 50 }), "required: lowercase letters, digits and -, at most 50"),
      field("Namespace", "namespace", input({ required: true, pattern: DNS_LABEL, maxlength: 63 }), "required: an existing namespace"),
      field("Image", "image", input({ required: true, maxlength: 512, placeholder: "nginx:1.27" }), "required: an image reference"),
      field("Identifier", "identifier", input({ pattern: DNS_LABEL, maxlength: 63 }), "optional: the Deployment's name; default: the name and a random suffix"),
      field("Replicas", "replicas", input({ type: "number", min: 0, max: 1000, value: 1 }), "0 to 1000"),
      field("Progress deadline (seconds)", "progress_deadline_seconds", input({ type: "number", min: 10, max: 3600, value: 600 }), "10 to 3600"),
      field("Environment", "env", area(3), "KEY=value, one per line"),
      field("Ports", "ports", area(2), "8080, 8080/UDP or 8080/TCP http, one per line"),
      field("Labels", "labels", area(2), "key=value, one per line"),
      field("Annotations", "annotations", area(2), "key=value, one per line"),
      field("Command", "command", area(2), "one argument per line"),
      field("Arguments", "args", area(2), "one argument per line"),
    ),
    resourceInputs(),
    h("p", { class: "error form-error", role: "alert" }),
    h("div", { class: "preview" }),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Create"),
      h("button", { type: "button", value: "preview" }, "Preview"),
    ),
  );
  const value = (name) => form.elements[name].value.trim();
  const body = () => {
    const spec = { name: value("name"), namespace: value("namespace"), image: value("image") };
    if (value("identifier")) spec.identifier = value("identifier");
    if (value("replicas")) spec.replicas = Number(value("replicas"));
    if (value("progress_deadline_seconds")) spec.progress_deadline_seconds = Number(value("progress_deadline_seconds"));
    for (const name of ["env", "labels", "annotations"]) if (value(name)) spec[name] = parsePairs(form.elements[name].value);
    if (value("ports")) spec.ports = parsePorts(form.elements.ports.value);
    for (const name of ["command", "args"]) if (value(name)) spec[name] = lines(form.elements[name].value);
    const resources = readResources(form);
    if (Object.keys(resources).length) spec.resources = resources;
    return spec;
  };
  // One key per form, so that pressing Create twice creates one deployment.
  let requestId = newRequestId();
  const send = async (dryRun) => {
    const preview = form.querySelector(".preview");
    put(preview);
    try {
      const answer = await call("POST", "/deployments/requests/create", {
        body: body(),
        query: { dry_run: dryRun || undefined },
        requestId: dryRun ? undefined : requestId,
      });
      showFieldErrors(form, { errors: [], message: "" });
      if (dryRun) put(preview, h("h2", {}, "What would be created"), diffTable(answer));
      else location.hash = `#/d/${answer.identifier}`;
    } catch (e) {
      if (e.status === 422 || e.errors.length) requestId = newRequestId();
      showFieldErrors(form, e);
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(false);
  });
  form.querySelector('button[value="preview"]').addEventListener("click", () => send(true));
  put(view, form);
  form.elements.name.focus();
}

// ------------------------------------------------------------ page: events

const EVENT_TYPES = [
  "request.accepted",
  "request.succeeded",
  "request.failed",
  "rollout.progressed",
  "rollout.completed",
  "rollout.failed",
  "rollout.superseded",
  "deployment.changed",
  "deployment.deleted",
];

const eventFilters = { type: "", identifier: "" };

function eventSummary(event) {
  const data = event.data || {};
  if (event.type === "deployment.changed") {
    return (event.changes || []).map((c) => `${c.field}: ${JSON.stringify(c.before)} → ${JSON.stringify(c.after)}`).join(", ");
  }
  if (event.type === "deployment.deleted") return `deleted from ${data.namespace}`;
  const parts = [`${data.request_type} ${data.status === "CREATED" ? "WAITING" : data.status}`];
  if (data.rollout) parts.push(`rollout ${data.rollout.state} ${data.rollout.ready_replicas}/${data.rollout.desired_replicas} ready`);
  if (data.rollout && data.rollout.reason) parts.push(reasonText(data.rollout.reason));
  if (data.failure_reason) parts.push(data.failure_reason);
  return parts.join(" · ");
}

function eventsView(view, stops) {
  const tbody = h("tbody");
  const older = h("button", { type: "button" }, "Older events");
  let cursor = null;
  const row = (e) =>
    h(
      "tr",
      { "data-event": e.id, "data-type": e.type },
      h("td", { "data-label": "When" }, when(e.occurred_on)),
      h("td", { "data-label": "Type" }, h("code", {}, e.type)),
      h("td", { "data-label": "Deployment" }, h("a", { href: `#/d/${e.identifier}` }, e.identifier)),
      h("td", { "data-label": "By" }, e.actor),
      h("td", { "data-label": "What" }, eventSummary(e)),
    );
  const query = () => ({ type: eventFilters.type || undefined, identifier: eventFilters.identifier || undefined });
  const loadOlder = async () => {
    const page = await call("GET", "/events", { query: { ...query(), order: "newest_first", before: cursor, limit: PAGE_SIZE } });
    tbody.append(...page.items.map(row));
    cursor = page.next_cursor;
    older.disabled = !cursor;
    return page.items;
  };
  older.addEventListener("click", () => loadOlder().catch(showError));

  const type = h("select", {}, h("option", { value: "" }, "all"), EVENT_TYPES.map((t) => h("option", { value: t, selected: t === eventFilters.type }, t)));
  type.addEventListener("change", () => {
    eventFilters.type = type.value;
    route();
  });
  const identifier = h("input", { value: eventFilters.identifier, pattern: DNS_LABEL, maxlength: 63, placeholder: "all" });
  identifier.addEventListener("change", () => {
    eventFilters.identifier = identifier.value.trim();
    route();
  });
  put(
    view,
    h("h1", {}, "Events"),
    h(
      "form",
      { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      field("Type", "type", type, "only events of this type"),
      field("Deployment", "identifier", identifier, "only this deployment's events"),
    ),
    h(
      "table",
      { class: "events" },
      h("caption", {}, "Newest first; new events appear at the top as they happen."),
      h("thead", {}, h("tr", {}, ["When", "Type", "Deployment", "By", "What"].map((c) => h("th", { scope: "col" }, c)))),
      tbody,
    ),
    h("nav", { class: "pager", "aria-label": "Older events" }, older),
  );
  return loadOlder().then((items) => {
    // Live from the newest event shown, so that none falls in between.
    stops.push(
      follow({
        identifier: eventFilters.identifier || undefined,
        types: eventFilters.type ? [eventFilters.type] : undefined,
        after: items.length ? items[0].id : undefined,
        onEvent: (e) => tbody.prepend(row(e)),
        onExpired: () => route(),
      }),
    );
  });
}

// ------------------------------------------------------------------ routing

const ROUTES = [
  [/^#?\/?$/, "deployments", deploymentsView],
  [/^#\/d\/([a-z0-9-]{1,63})$/, "deployments", deploymentView],
  [/^#\/create$/, "create", createView],
  [/^#\/events$/, "events", eventsView],
];

let stops = [];

function route() {
  stops.forEach((stop) => stop());
  stops = [];
  document.querySelectorAll("dialog").forEach((d) => d.remove());
  const view = main();
  const who = document.getElementById("who");
  if (!credential()) {
    put(who);
    document.querySelector("nav").hidden = true;
    return signInView(view);
  }
  document.querySelector("nav").hidden = false;
  put(
    who,
    h("span", {}, `Signed in as ${displayName()}`),
    " ",
    h("button", { type: "button", class: "link", onclick: () => signOut() }, "Sign out"),
  );
  const found = ROUTES.map(([pattern, page, render]) => [location.hash.match(pattern), page, render]).find(([m]) => m);
  if (!found) {
    put(view, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the deployments")));
    return;
  }
  const [match, page, render] = found;
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  const mine = stops;
  Promise.resolve(render(view, mine, ...match.slice(1))).catch((e) => {
    if (e.status === 404) put(view, h("h1", {}, "Not found"), h("p", {}, e.message), h("p", {}, h("a", { href: "#/" }, "Back to the deployments")));
    else if (e.status !== 401) showError(e);
  });
}

async function start() {
  try {
    const config = await (await fetch("config.json")).json();
    authMode = config.auth;
  } catch {
    authMode = "header";
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
