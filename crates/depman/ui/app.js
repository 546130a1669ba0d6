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
let signInReason = "";

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
  signInReason = "";
}

// Forgets the credential and goes back to the sign-in; a refusal of a
// credential already replaced (an answer still on its way) changes nothing.
function signOut(reason, refused) {
  if (refused !== undefined && refused !== credential()) return;
  const { store, key } = keeper();
  store.removeItem(key);
  signInReason = reason || "";
  route();
}

function authHeaders(value = credential()) {
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
  const used = credential();
  const headers = { ...authHeaders(used), Accept: "application/json" };
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
    signOut((json && json.detail) || "sign in again", used);
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

// One Server-Sent Events frame: its id and its event, if it has data.
function parseFrame(frame) {
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
  return { id, event: data.length ? JSON.parse(data.join("\n")) : null };
}

// Follows the caller's events (Server-Sent Events read through fetch, so
// that the same headers as every call go along) from `after`, or from now,
// for as long as `page` is shown. A dropped connection resumes after the
// last event seen, so nothing is missed or shown twice.
function follow(page, { identifier, types, after, onEvent, onExpired }) {
  const controller = new AbortController();
  page.onLeave(() => {
    controller.abort();
    setLive("off");
  });
  let last = after;
  let delay = 1000;
  const connect = async () => {
    const used = credential();
    const headers = { ...authHeaders(used), Accept: "text/event-stream" };
    if (last) headers["Last-Event-ID"] = last;
    const response = await fetch(apiUrl("/events", { identifier, type: types }), {
      headers,
      signal: controller.signal,
    });
    if (response.status === 410) return "expired";
    if (response.status === 401) return signOut("sign in again", used) || "refused";
    if (!response.ok || !response.body) throw new Error(`events answered ${response.status}`);
    setLive("live");
    delay = 1000;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return "ended";
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let parsed;
          try {
            parsed = parseFrame(frame);
          } catch {
            continue; // a frame this version cannot read: skip it, stay connected
          }
          if (parsed.id) last = parsed.id;
          if (parsed.event) onEvent(parsed.event);
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  };
  (async () => {
    while (page.alive()) {
      let outcome = "dropped";
      try {
        outcome = await connect();
      } catch {
        // A dropped connection, or the page left: the loop tells them apart.
      }
      if (!page.alive()) return;
      if (outcome === "expired") return onExpired();
      if (outcome === "refused") return;
      setLive("reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  })();
}

// Collects the keys events name and calls `flush` with them once a burst is
// over (a rollout's events come in quick succession), while `page` is shown.
function batcher(page, flush, wait = 150) {
  const pending = new Set();
  let timer = null;
  page.onLeave(() => clearTimeout(timer));
  return (key) => {
    pending.add(key);
    clearTimeout(timer);
    timer = setTimeout(() => {
      const keys = [...pending];
      pending.clear();
      flush(keys).catch((e) => page.alive() && showError(e));
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

// Puts `children` in `parent` in place of what it had (`null` and `false`
// stand for nothing: the DOM's own replaceChildren would show "null"). The
// element with the focus keeps it when its successor has the same
// `data-key`, so live updates do not throw a keyboard user off.
function put(parent, ...children) {
  const focused = document.activeElement;
  const key = focused && parent.contains(focused) ? focused.dataset.key : undefined;
  parent.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  if (key) {
    const successor = parent.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (successor) successor.focus();
  }
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

// A value from JSON as text: `—` for nothing.
const show = (value) =>
  value === null || value === undefined ? "—" : typeof value === "string" ? value : JSON.stringify(value);

// Tables stay tables for assistive technology when the phone layout turns
// their rows into cards (display: block drops the implicit roles).
function table(attributes, { caption, columns, rows }) {
  return h(
    "table",
    { role: "table", ...attributes },
    caption ? h("caption", {}, caption) : null,
    h(
      "thead",
      { role: "rowgroup" },
      h(
        "tr",
        { role: "row" },
        columns.map((c) =>
          h("th", { scope: "col", role: "columnheader" }, c || h("span", { class: "visually-hidden" }, "Actions")),
        ),
      ),
    ),
    h("tbody", { role: "rowgroup" }, rows),
  );
}

const row = (attributes, ...cells) => h("tr", { role: "row", ...attributes }, ...cells);

// A cell, labelled for the phone layout, its content kept in one box so
// that it stays beside its label.
const cell = (label, content, attributes = {}) =>
  h("td", { role: "cell", "data-label": label, ...attributes }, h("span", {}, content));

// Health in colour and in words, so that colour is never the only sign.
const HEALTH = { HEALTHY: "✓", PROGRESSING: "↻", DEGRADED: "✕", MISSING: "?" };

const healthBadge = (health) => h("span", { class: `badge health-${health}` }, `${HEALTH[health] || ""} ${health}`);

const stateBadge = (state) => h("span", { class: `badge state-${state}` }, state);

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

const reasonText = (reason) => (reason ? `${REASONS[reason] || reason} (${reason})` : "");

// A diff from a dry run: each leaf that would change.
function diffTable(preview) {
  const warnings = (preview.warnings || []).map((w) =>
    h("p", { class: "banner warning", role: "note" }, `Kubernetes warns: ${w}`),
  );
  if (preview.diff.length === 0) {
    return h("div", { class: "diff" }, warnings, h("p", {}, "No change: the cluster already has this."));
  }
  const count = preview.diff.length;
  return h(
    "div",
    { class: "diff" },
    warnings,
    table(
      {},
      {
        caption: `${count} change${count === 1 ? "" : "s"}`,
        columns: ["Field", "Now", "After"],
        rows: preview.diff.map((d) =>
          row(
            {},
            cell("Field", h("code", {}, d.path)),
            cell("Now", show(d.before), { class: "before" }),
            cell("After", show(d.after), { class: "after" }),
          ),
        ),
      },
    ),
  );
}

// A modal dialog: `body` and a confirm button that runs `confirm`; it
// stays open with the error when that fails. A dangerous one starts on
// Cancel, so that Enter does not confirm it.
function dialog({ title, body, confirmLabel, danger, confirm }) {
  const error = h("p", { class: "error", role: "alert" });
  const confirmButton = h("button", { type: "button", class: danger ? "danger" : "primary" }, confirmLabel);
  const cancelButton = h("button", { type: "button", onclick: () => box.close() }, "Cancel");
  const returnTo = document.activeElement;
  const box = h(
    "dialog",
    { "aria-labelledby": "dialog-title" },
    h("h2", { id: "dialog-title" }, title),
    body,
    error,
    h("div", { class: "actions" }, confirmButton, cancelButton),
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
  // Back to the button that opened it, or to its successor if the page
  // was drawn anew meanwhile.
  box.addEventListener("close", () => {
    box.remove();
    const key = returnTo && returnTo.dataset && returnTo.dataset.key;
    const target = returnTo && returnTo.isConnected ? returnTo : key && document.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (target) target.focus();
  });
  document.body.append(box);
  box.showModal();
  (danger ? cancelButton : confirmButton).focus();
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
  if (problem.message && (problem.errors.length === 0 || unplaced.length)) {
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

const showPairs = (pairs) =>
  Object.entries(pairs || {})
    .map(([k, v]) => `${k}=${v}`)
    .join("\n");

const lines = (text) =>
  text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);

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

// The resources a form or a spec gives, with nothing for what is empty, so
// that the two compare equal when they ask the same.
function compactResources(read) {
  const resources = {};
  for (const kind of ["requests", "limits"]) {
    for (const name of ["cpu", "memory"]) {
      const value = (read(kind, name) || "").trim();
      if (value) (resources[kind] ||= {})[name] = value;
    }
  }
  return resources;
}

const formResources = (form) => compactResources((kind, name) => form.elements[`resources.${kind}.${name}`].value);
const specResources = (spec) => compactResources((kind, name) => ((spec.resources || {})[kind] || {})[name]);

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
      form.querySelector(".form-error").textContent = jwt
        ? "Paste a token."
        : "Give a user id of 1 to 128 letters, digits and . _ @ -";
      return;
    }
    signIn(value);
    route();
  });
  put(view, form);
  input.focus();
}

// ------------------------------------------------------ page: deployments

const STATUSES = ["INITIATED", "UPDATING", "CREATED", "DELETED", "FAILED"];

// Kept while the tab lives, so that coming back keeps the filters.
const listState = { search: "", namespace: "", status: "", cursors: [null] };

function deploymentsView(view, page) {
  const rows = h("div");
  const summary = h("p", { class: "summary" });
  const previous = h("button", { type: "button" }, "← Newer");
  const next = h("button", { type: "button" }, "Older →");
  let shown = { items: [], next_cursor: null };
  let loads = 0;

  const matches = (d) =>
    (!listState.status || d.status === listState.status) &&
    (!listState.namespace || d.namespace === listState.namespace) &&
    (!listState.search || d.identifier.includes(listState.search.toLowerCase()));

  const deploymentRow = (d) =>
    row(
      { "data-identifier": d.identifier },
      cell("Name", h("a", { href: `#/d/${d.identifier}`, "data-key": `link-${d.identifier}` }, d.identifier)),
      cell("Namespace", d.namespace),
      cell("Image", d.image, { class: "image" }),
      cell("Ready", `${d.ready_replicas ?? 0}/${d.replicas ?? 0}`),
      cell("Status", d.status),
      cell("Health", healthBadge(d.health)),
      cell("Reason", reasonText(d.health_reason)),
      cell("Last change", when(d.updated_on)),
    );

  const render = () => {
    const columns = ["Name", "Namespace", "Image", "Ready", "Status", "Health", "Reason", "Last change"];
    put(rows, table({ class: "deployments" }, { columns, rows: shown.items.map(deploymentRow) }));
    const pageNumber = listState.cursors.length;
    const count = shown.items.length;
    summary.textContent =
      count === 0 ? "No deployments match." : `Page ${pageNumber}: ${count} deployment${count === 1 ? "" : "s"}`;
    previous.disabled = pageNumber === 1;
    next.disabled = !shown.next_cursor;
  };

  // Only the answer to the latest load is shown: a slow one for an older
  // filter never overwrites a newer.
  const load = async () => {
    const mine = ++loads;
    const answer = await call("GET", "/deployments", {
      query: {
        search: listState.search,
        namespace: listState.namespace,
        status: listState.status,
        limit: PAGE_SIZE,
        cursor: listState.cursors.at(-1),
      },
    });
    if (mine !== loads || !page.alive()) return;
    shown = answer;
    render();
  };

  // An event names a deployment: show its new state where it is listed,
  // and put a new one (its CREATE accepted) on top of the first page.
  const created = new Set();
  const refresh = batcher(page, async (identifiers) => {
    const loadsBefore = loads;
    for (const identifier of identifiers) {
      const listed = shown.items.some((d) => d.identifier === identifier);
      const isNew = created.delete(identifier) && !listed && listState.cursors.length === 1;
      if (!listed && !isNew) continue;
      let deployment;
      try {
        deployment = await call("GET", `/deployments/${identifier}`);
      } catch (e) {
        if (e.status === 404) continue;
        throw e;
      }
      if (loads !== loadsBefore || !page.alive()) return;
      const index = shown.items.findIndex((d) => d.identifier === identifier);
      if (index >= 0) shown.items[index] = deployment;
      else if (matches(deployment)) shown.items.unshift(deployment);
    }
    render();
  });
  const onEvent = (event) => {
    if (event.type === "request.accepted" && event.data.request_type === "CREATE") created.add(event.identifier);
    refresh(event.identifier);
  };

  const restart = () => {
    listState.cursors = [null];
    load().catch(showError);
  };
  const search = h("input", { type: "search", value: listState.search, maxlength: 63, placeholder: "part of a name" });
  let typing = null;
  page.onLeave(() => clearTimeout(typing));
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
    listState.cursors.push(shown.next_cursor);
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
    rows,
    h("nav", { class: "pager", "aria-label": "Pages of deployments" }, previous, next),
  );
  follow(page, { onEvent, onExpired: () => route() });
  return load();
}

// ------------------------------------------------------- page: deployment

function deploymentView(view, page, identifier) {
  const state = { deployment: null, requests: [], revisions: [] };
  const sections = {
    head: h("header", { class: "deployment-head" }),
    live: h("section", { "aria-labelledby": "live-title" }),
    rollout: h("section", { "aria-labelledby": "rollout-title" }),
    requests: h("section", { "aria-labelledby": "requests-title" }),
    history: h("section", { "aria-labelledby": "history-title" }),
  };
  let editing = null;
  let loads = 0;

  const load = async () => {
    const mine = ++loads;
    const [deployment, requests, revisions] = await Promise.all([
      call("GET", `/deployments/${identifier}`),
      call("GET", "/deployments/requests", { query: { identifier, limit: 10 } }),
      call("GET", `/deployments/${identifier}/revisions`, { query: { limit: 20 } }),
    ]);
    if (mine !== loads || !page.alive()) return;
    Object.assign(state, { deployment, requests: requests.items, revisions: revisions.items });
    render();
  };
  const reload = () => load().catch((e) => page.alive() && showError(e));

  const newest = () => state.requests[0];
  const current = () => state.requests.find((r) => r.request_type !== "DELETE" && r.rollout);
  const gone = () => ["DELETED", "FAILED"].includes(state.deployment.status);
  // What the cluster was last asked for: the newest revision, else (no
  // revision yet) the newest request.
  const desired = () => (state.revisions[0] || newest()).spec;

  const render = () => {
    const d = state.deployment;
    put(
      sections.head,
      h("p", {}, h("a", { href: "#/" }, "← Deployments")),
      h("h1", {}, d.identifier),
      h("p", { class: "badges" }, h("span", { class: "status" }, d.status), " ", healthBadge(d.health)),
      d.health_reason
        ? h("p", { class: "banner error reason" }, reasonText(d.health_reason), h("br"), d.health_message || "")
        : null,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: edit, disabled: gone() || !newest(), "data-key": "edit" }, "Edit"),
        h(
          "button",
          { type: "button", class: "danger", onclick: remove, disabled: gone() || !newest(), "data-key": "delete" },
          "Delete",
        ),
      ),
    );
    const facts = [
      ["Namespace", d.namespace],
      ["Image", d.image],
      [
        "Replicas",
        `${d.ready_replicas ?? 0} ready, ${d.available_replicas ?? 0} available, ` +
          `${d.updated_replicas ?? 0} updated, ${d.replicas ?? 0} desired`,
      ],
      ["Generation", `${d.observed_generation ?? "—"} observed of ${d.generation ?? "—"}`],
      ["Created", when(d.created_on)],
      ["Last change", when(d.updated_on)],
    ];
    put(
      sections.live,
      h("h2", { id: "live-title" }, "Live state"),
      h("dl", { class: "facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
      d.conditions.length
        ? table(
            { class: "conditions" },
            {
              caption: "Conditions",
              columns: ["Type", "Status", "Reason", "Message"],
              rows: d.conditions.map((c) =>
                row(
                  {},
                  cell("Type", c.type),
                  cell("Status", c.status),
                  cell("Reason", c.reason || ""),
                  cell("Message", c.message || ""),
                ),
              ),
            },
          )
        : null,
    );
    put(sections.rollout, h("h2", { id: "rollout-title" }, "Rollout"), rolloutView(current()));
    put(sections.requests, h("h2", { id: "requests-title" }, "Recent requests"), requestsTable());
    put(sections.history, h("h2", { id: "history-title" }, "Revisions"), historyTable());
  };

  const requestsTable = () => {
    if (state.requests.length === 0) return h("p", {}, "None.");
    return table(
      { class: "requests" },
      {
        columns: ["Type", "Status", "Image", "Outcome", "Accepted", ""],
        rows: state.requests.map((r) =>
          row(
            { "data-request": r.id },
            cell("Type", [r.request_type, r.rolled_back_to ? ` (rollback to ${r.rolled_back_to})` : ""]),
            cell("Status", r.status === "CREATED" ? "WAITING" : r.status),
            cell("Image", r.image, { class: "image" }),
            cell("Outcome", outcome(r)),
            cell("Accepted", when(r.created_on)),
            h(
              "td",
              { role: "cell" },
              r.status === "CREATED"
                ? h(
                    "button",
                    {
                      type: "button",
                      onclick: () => cancel(r),
                      "data-key": `cancel-${r.id}`,
                      "aria-label": `Cancel the ${r.request_type} request`,
                    },
                    "Cancel",
                  )
                : null,
            ),
          ),
        ),
      },
    );
  };

  const historyTable = () => {
    if (state.revisions.length === 0) return h("p", {}, "No revision yet.");
    const latest = state.revisions[0].revision;
    return table(
      { class: "revisions" },
      {
        columns: ["Revision", "Image", "Replicas", "Outcome", "Applied", "By", ""],
        rows: state.revisions.map((r) =>
          row(
            { "data-revision": r.revision },
            cell("Revision", [
              `${r.revision}`,
              r.revision === latest ? " (current)" : "",
              r.rolled_back_to ? ` ← ${r.rolled_back_to}` : "",
            ]),
            cell("Image", r.spec.image, { class: "image" }),
            cell("Replicas", `${r.spec.replicas}`),
            cell("Outcome", r.rollout ? [stateBadge(r.rollout.state), " ", reasonText(r.rollout.reason)] : "—"),
            cell("Applied", when(r.applied_on)),
            cell("By", r.actor),
            h(
              "td",
              { role: "cell" },
              gone()
                ? null
                : h(
                    "button",
                    {
                      type: "button",
                      onclick: () => rollback(r.revision),
                      "data-key": `rollback-${r.revision}`,
                      "aria-label": `Roll back to revision ${r.revision}`,
                    },
                    "Roll back",
                  ),
            ),
          ),
        ),
      },
    );
  };

  const cancel = async (request) => {
    try {
      await call("POST", `/deployments/requests/${request.id}/cancel`);
    } catch (e) {
      showError(e);
    }
    reload();
  };

  // The dry run's diff first, then the change itself under one key made
  // when the dialog opened: a second click or a retry is a replay.
  const previewThenApply = async ({ title, confirmLabel, danger, send, onProblem }) => {
    let preview;
    try {
      preview = await send({ dryRun: true });
    } catch (e) {
      if (onProblem && e.errors.length) return onProblem(e);
      return showError(e);
    }
    if (!page.alive()) return;
    const requestId = newRequestId();
    dialog({
      title,
      body: diffTable(preview),
      confirmLabel,
      danger,
      confirm: async () => {
        await send({ dryRun: false, requestId });
        reload();
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
    if (editing && editing.isConnected) return editing.querySelector("input").focus();
    const spec = desired();
    const image = h("input", { value: spec.image, required: true, maxlength: 255 });
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
    editing = form;
    // Only what the form changed goes in the PATCH.
    const patch = () => {
      const body = {};
      if (image.value.trim() !== spec.image) body.image = image.value.trim();
      if (replicas.value === "" || Number(replicas.value) !== spec.replicas) {
        body.replicas = replicas.value === "" ? null : Number(replicas.value);
      }
      const newEnv = parsePairs(env.value);
      if (JSON.stringify(newEnv) !== JSON.stringify(spec.env || {})) body.env = newEnv;
      const resources = formResources(form);
      if (JSON.stringify(resources) !== JSON.stringify(specResources(spec))) body.resources = resources;
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
  const refresh = batcher(page, () => load());
  follow(page, { identifier, onEvent: () => refresh(identifier), onExpired: () => route() });
  return load();
}

// The rollout of a request: progress bars of updated, ready and available
// replicas against desired, its state and, when it failed, why in words.
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
  const ended = r.finished_on ? [", ended ", when(r.finished_on)] : "";
  const box = h(
    "div",
    { class: `rollout rollout-${r.state}` },
    h("p", {}, stateBadge(r.state), ` generation ${r.generation}, started `, when(r.started_on), ended),
    bar("Updated", r.updated_replicas, "updated"),
    bar("Ready", r.ready_replicas, "ready"),
    bar("Available", r.available_replicas, "available"),
    r.reason ? h("p", { class: "banner error" }, reasonText(r.reason), h("br"), r.message || "") : null,
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
  const createButton = h("button", { type: "submit", class: "primary" }, "Create");
  const previewButton = h("button", { type: "button" }, "Preview");
  const form = h(
    "form",
    { class: "card create", novalidate: true, "aria-labelledby": "create-title" },
    h("h1", { id: "create-title" }, "Create a deployment"),
    h(
      "div",
      { class: "grid" },
      field(
        "Name",
        "name",
        input({ required: true, pattern: DNS_LABEL, maxlength: 50 }),
        "required: lowercase letters, digits and -, at most 50",
      ),
      field(
        "Namespace",
        "namespace",
        input({ required: true, pattern: DNS_LABEL, maxlength: 63 }),
        "required: an existing namespace",
      ),
      field(
        "Image",
        "image",
        input({ required: true, maxlength: 255, placeholder: "nginx:1.27" }),
        "required: an image reference",
      ),
      field(
        "Identifier",
        "identifier",
        input({ pattern: DNS_LABEL, maxlength: 63 }),
        "optional: the Deployment's name; default: the name and a random suffix",
      ),
      field("Replicas", "replicas", input({ type: "number", min: 0, max: 1000, value: 1 }), "0 to 1000"),
      field(
        "Progress deadline (seconds)",
        "progress_deadline_seconds",
        input({ type: "number", min: 10, max: 3600, value: 600 }),
        "10 to 3600",
      ),
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
    h("div", { class: "actions" }, createButton, previewButton),
  );
  const value = (name) => form.elements[name].value.trim();
  const body = () => {
    const spec = { name: value("name"), namespace: value("namespace"), image: value("image") };
    if (value("identifier")) spec.identifier = value("identifier");
    if (value("replicas")) spec.replicas = Number(value("replicas"));
    if (value("progress_deadline_seconds")) spec.progress_deadline_seconds = Number(value("progress_deadline_seconds"));
    for (const name of ["env", "labels", "annotations"]) {
      if (value(name)) spec[name] = parsePairs(form.elements[name].value);
    }
    if (value("ports")) spec.ports = parsePorts(form.elements.ports.value);
    for (const name of ["command", "args"]) if (value(name)) spec[name] = lines(form.elements[name].value);
    const resources = formResources(form);
    if (Object.keys(resources).length) spec.resources = resources;
    return spec;
  };
  // One key per body: pressing Create twice (or again after a dropped
  // connection) creates one deployment; a changed form is a new request.
  let sent = { json: null, requestId: null };
  const keyFor = (json) => {
    if (sent.json !== json) sent = { json, requestId: newRequestId() };
    return sent.requestId;
  };
  const send = async (dryRun) => {
    const preview = form.querySelector(".preview");
    put(preview);
    const spec = body();
    createButton.disabled = previewButton.disabled = true;
    try {
      const answer = await call("POST", "/deployments/requests/create", {
        body: spec,
        query: { dry_run: dryRun || undefined },
        requestId: dryRun ? undefined : keyFor(JSON.stringify(spec)),
      });
      showFieldErrors(form, { errors: [], message: "" });
      if (dryRun) put(preview, h("h2", {}, "What would be created"), diffTable(answer));
      else location.hash = `#/d/${answer.identifier}`;
    } catch (e) {
      if (e.status !== 401) showFieldErrors(form, e);
    } finally {
      createButton.disabled = previewButton.disabled = false;
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(false);
  });
  previewButton.addEventListener("click", () => send(true));
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
    return (event.changes || []).map((c) => `${c.field}: ${show(c.before)} → ${show(c.after)}`).join(", ");
  }
  if (event.type === "deployment.deleted") return `deleted from ${data.namespace}`;
  const parts = [`${data.request_type} ${data.status === "CREATED" ? "WAITING" : data.status}`];
  if (data.rollout) {
    parts.push(`rollout ${data.rollout.state} ${data.rollout.ready_replicas}/${data.rollout.desired_replicas} ready`);
    if (data.rollout.reason) parts.push(reasonText(data.rollout.reason));
  }
  if (data.failure_reason) parts.push(data.failure_reason);
  return parts.join(" · ");
}

function eventsView(view, page) {
  const older = h("button", { type: "button" }, "Older events");
  let cursor = null;
  const eventRow = (e) =>
    row(
      { "data-event": e.id, "data-type": e.type },
      cell("When", when(e.occurred_on)),
      cell("Type", h("code", {}, e.type)),
      cell("Deployment", h("a", { href: `#/d/${e.identifier}` }, e.identifier)),
      cell("By", e.actor),
      cell("What", eventSummary(e)),
    );
  const filters = () => ({ type: eventFilters.type || undefined, identifier: eventFilters.identifier || undefined });
  const loadOlder = async () => {
    older.disabled = true;
    try {
      const answer = await call("GET", "/events", {
        query: { ...filters(), order: "newest_first", before: cursor, limit: PAGE_SIZE },
      });
      if (!page.alive()) return [];
      body.append(...answer.items.map(eventRow));
      cursor = answer.next_cursor;
      return answer.items;
    } finally {
      older.disabled = !cursor;
    }
  };
  older.addEventListener("click", () => loadOlder().catch(showError));

  const type = h(
    "select",
    {},
    h("option", { value: "" }, "all"),
    EVENT_TYPES.map((t) => h("option", { value: t, selected: t === eventFilters.type }, t)),
  );
  // A filter starts the page anew, with the focus back on that filter.
  const refilter = (input) => {
    route();
    document.getElementById(input.id).focus();
  };
  type.addEventListener("change", () => {
    eventFilters.type = type.value;
    refilter(type);
  });
  const identifier = h("input", { value: eventFilters.identifier, pattern: DNS_LABEL, maxlength: 63, placeholder: "all" });
  identifier.addEventListener("change", () => {
    eventFilters.identifier = identifier.value.trim();
    refilter(identifier);
  });
  const log = table(
    { class: "events" },
    {
      caption: "Newest first; new events appear at the top as they happen.",
      columns: ["When", "Type", "Deployment", "By", "What"],
      rows: [],
    },
  );
  // The body the rows go into, older at the bottom and live ones on top.
  const body = log.querySelector("tbody");
  put(
    view,
    h("h1", {}, "Events"),
    h(
      "form",
      { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      field("Type", "type", type, "only events of this type"),
      field("Deployment", "identifier", identifier, "only this deployment's events"),
    ),
    log,
    h("nav", { class: "pager", "aria-label": "Older events" }, older),
  );
  return loadOlder().then((items) => {
    if (!page.alive()) return;
    // Live from the newest event shown, so that none falls in between.
    follow(page, {
      identifier: eventFilters.identifier || undefined,
      types: eventFilters.type ? [eventFilters.type] : undefined,
      after: items.length ? items[0].id : undefined,
      onEvent: (e) => body.prepend(eventRow(e)),
      onExpired: () => route(),
    });
  });
}

// ------------------------------------------------------------------ routing

const ROUTES = [
  [/^#?\/?$/, "deployments", deploymentsView],
  [/^#\/d\/([a-z0-9-]{1,63})$/, "deployments", deploymentView],
  [/^#\/create$/, "create", createView],
  [/^#\/events$/, "events", eventsView],
];

// The page shown now: what it started (streams, timers) stops when it is
// left, and its late answers are dropped once it is no longer `alive`.
let current = null;

function newPage() {
  const stops = [];
  const page = {
    alive: () => current === page,
    onLeave: (stop) => stops.push(stop),
    leave: () => stops.forEach((stop) => stop()),
  };
  return page;
}

function notFound(view, message) {
  put(
    view,
    h("h1", {}, "Not found"),
    message ? h("p", {}, message) : null,
    h("p", {}, h("a", { href: "#/" }, "Back to the deployments")),
  );
}

function route() {
  if (current) current.leave();
  const page = newPage();
  current = page;
  document.querySelectorAll("dialog").forEach((d) => d.remove());
  const view = main();
  const who = document.getElementById("who");
  const nav = document.querySelector("nav");
  if (!credential()) {
    put(who);
    nav.hidden = true;
    return signInView(view);
  }
  nav.hidden = false;
  put(
    who,
    h("span", {}, `Signed in as ${displayName()}`),
    " ",
    h("button", { type: "button", class: "link", onclick: () => signOut() }, "Sign out"),
  );
  const found = ROUTES.map(([pattern, name, render]) => [location.hash.match(pattern), name, render]).find(
    ([match]) => match,
  );
  nav.querySelectorAll("a").forEach((a) => {
    if (found && a.dataset.page === found[1]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  if (!found) return notFound(view);
  const [match, , render] = found;
  // The new page's content is where keyboard and screen reader users land.
  view.focus({ preventScroll: true });
  Promise.resolve(render(view, page, ...match.slice(1))).catch((e) => {
    if (!page.alive() || e.status === 401) return;
    if (e.status === 404) notFound(view, e.message);
    else showError(e);
  });
}

async function start() {
  // The skip link moves the focus, not the route.
  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    main().focus();
  });
  try {
    const response = await fetch("config.json");
    if (!response.ok) throw new Error(`config.json answered ${response.status}`);
    authMode = (await response.json()).auth;
  } catch (e) {
    put(main(), h("p", { class: "banner error", role: "alert" }, `The dashboard cannot start: ${e.message}. Reload to try again.`));
    return;
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
