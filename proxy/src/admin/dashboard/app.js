// MCP Hangar's dashboard: reads the admin API (/admin/api/*) and its live event feed, and shows
// providers, groups, traffic, discovery, quarantine and recent events. No framework, no build
// step, nothing from outside the gateway. Every value from the API goes into the page as text,
// never as markup (provider names and labels come from discovery sources).
"use strict";

const API = "/admin/api";
const REFRESH_MS = 5000;
const MAX_EVENTS = 100;
const CREDENTIAL_KEY = "mcp-hangar-credential";

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const svgEl = (tag, attrs = {}) => {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
};

// ---- credentials -------------------------------------------------------------------------

function credential() {
  try {
    return JSON.parse(sessionStorage.getItem(CREDENTIAL_KEY) || "null");
  } catch {
    return null;
  }
}

function authHeaders() {
  const c = credential();
  if (!c || !c.value) return {};
  return c.kind === "bearer" ? { Authorization: `Bearer ${c.value}` } : { "X-API-Key": c.value };
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A JSON API call; errors carry the status and the API's reason. */
async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/yaml";
  const res = await fetch(API + path, { method, headers, body, cache: "no-store" });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || `HTTP ${res.status}`);
  return data;
}

// ---- notices ------------------------------------------------------------------------------

function notice(text) {
  const n = $("notice");
  n.textContent = text || "";
  n.hidden = !text;
}

function needCredentials(err) {
  if (err instanceof ApiError && err.status === 401) {
    $("signin-why").textContent = credential()
      ? "Those credentials were not accepted. Sign in with an admin's API key or token."
      : "The admin API needs an admin's credentials.";
    $("signin").hidden = false;
    return true;
  }
  if (err instanceof ApiError && err.status === 403) {
    notice(`${err.message}. The dashboard needs the admin role.`);
    return true;
  }
  return false;
}

// ---- formatting ---------------------------------------------------------------------------

const fmtTime = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
const fmtMs = (v) => (v === null || v === undefined ? "–" : v < 10 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`);

function badge(kind, value) {
  const label = String(value).replace("_", "-");
  return el("span", { class: `badge ${kind}-${value}` }, label);
}

/** Intervals a sparkline spans (six minutes of five-second intervals, as the gateway keeps). */
const SLOTS = 72;

/** A sparkline of `values` (oldest first, the newest at the right end) with the last value
 * beside it; missing values (no calls, so no latency) draw as zero. */
function sparkline(values, { label, unit = "", bad = false, format = (v) => String(v) }) {
  const w = 96, h = 22, pad = 2;
  const nums = values.slice(-SLOTS).map((v) => (v === null || v === undefined ? 0 : v));
  const max = Math.max(1, ...nums);
  const step = (w - 2 * pad) / (SLOTS - 1);
  const x = (i) => w - pad - (nums.length - 1 - i) * step;
  const y = (v) => h - pad - (v / max) * (h - 2 * pad);
  const points = nums.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  if (points.length === 1) points.unshift(`${(x(0) - step).toFixed(1)},${y(nums[0]).toFixed(1)}`);
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, "aria-hidden": "true", focusable: "false" });
  svg.append(svgEl("line", { class: "base", x1: pad, y1: h - pad, x2: w - pad, y2: h - pad }));
  if (points.length) svg.append(svgEl("polyline", { points: points.join(" ") }));
  const last = values.length ? values[values.length - 1] : null;
  const peak = nums.length ? Math.max(...nums) : 0;
  const summary = `${label}: last ${last === null ? "none" : format(last) + unit}, peak ${format(peak)}${unit} over the last ${nums.length} intervals`;
  return el("span", { class: `spark${bad && peak > 0 ? " bad" : ""}`, role: "img", "aria-label": summary, title: summary },
    svg, el("span", { class: "value" }, last === null ? "–" : format(last) + unit));
}

// ---- rendering ----------------------------------------------------------------------------

let stats = { providers: {} };

function providerRow(p, member = null) {
  const series = stats.providers[p.name] || [];
  const actions = el("span", { class: "row-actions" });
  if (p.mode !== "group" && !member) {
    const running = ["READY", "DEGRADED", "INITIALIZING"].includes(p.state);
    actions.append(
      el("button", { type: "button", "aria-label": `${running ? "Stop" : "Start"} ${p.name}`,
        onclick: () => act(`/providers/${encodeURIComponent(p.name)}/${running ? "stop" : "start"}`, `${running ? "Stopping" : "Starting"} ${p.name}`) },
        running ? "Stop" : "Start"));
  }
  const nameCell = member
    ? el("td", {}, `└ ${p.name}`, el("span", { class: "muted" }, ` weight ${member.weight ?? "–"}, priority ${member.priority ?? "–"}`))
    : el("td", {}, el("button", { type: "button", class: "name", "aria-label": `Details of ${p.name}`, onclick: () => details(p.name) }, p.name));
  return el("tr", { class: member ? "member" : null, "data-provider": p.name, "data-state": p.state, "data-circuit": p.circuit || "" },
    nameCell,
    el("td", {}, member ? "" : p.mode),
    el("td", {}, badge("state", p.state)),
    el("td", {}, p.circuit ? badge("circuit", p.circuit) : "–"),
    el("td", { class: "num" }, p.inflight ?? "–"),
    el("td", {}, member ? "" : sparkline(series.map((s) => s.calls), { label: `${p.name} calls per interval` })),
    el("td", {}, member ? "" : sparkline(series.map((s) => s.errors + s.tool_errors), { label: `${p.name} errors per interval`, bad: true })),
    el("td", {}, member ? "" : sparkline(series.map((s) => s.p95_ms), { label: `${p.name} p95 latency`, unit: " ms", format: (v) => (v < 10 ? v.toFixed(1) : String(Math.round(v))) })),
    el("td", {}, actions));
}

/** Runs `render`, which replaces elements; the control that had the keyboard focus gets it back
 * in its new element (found by its label), so a keyboard user is not sent back to the top of the
 * page by every refresh. */
function keepingFocus(render) {
  const was = document.activeElement;
  const label = was && was !== document.body ? was.getAttribute("aria-label") : null;
  render();
  if (label && !was.isConnected) {
    [...document.querySelectorAll("[aria-label]")].find((e) => e.getAttribute("aria-label") === label)?.focus();
  }
}

function renderOverview(o) {
  const g = o.gateway;
  const health = g.providers.DEAD ? "Some providers are down" : g.providers.DEGRADED ? "Some providers are degraded" : "All providers serving or idle";
  $("gateway").textContent =
    `${health} · version ${g.version} · configuration generation ${g.config.generation}` +
    ` · ${g.sessions} sessions · ${g.inflight_requests} requests in flight` +
    (g.config.last_reload.outcome === "rejected" ? " · last reload rejected" : "");
  const byName = Object.fromEntries(o.providers.map((p) => [p.name, p]));
  const rows = [];
  for (const p of o.providers) {
    rows.push(providerRow(p));
    for (const m of p.members || []) rows.push(providerRow({ ...(byName[m.name] || {}), ...m }, m));
  }
  $("providers").tBodies[0].replaceChildren(...rows);
  if (!o.providers.length) {
    $("providers").tBodies[0].append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No providers are configured.")));
  }

  const q = o.quarantined.map((item) =>
    el("li", { "data-quarantined": item.name },
      el("strong", {}, item.name),
      el("span", { class: "muted" }, `source ${item.source} · since ${fmtTime(item.since_ms)}`),
      el("span", {}, item.reason),
      el("button", { type: "button", class: "primary", "aria-label": `Approve ${item.name}`, onclick: () => approve(item.name) }, "Approve")));
  $("quarantine").replaceChildren(...(q.length ? q : [el("li", { class: "muted" }, "Nothing is held back.")]));

  const s = o.sources.map((src) =>
    el("li", {},
      el("strong", {}, `${src.type}[${src.index}]`),
      el("span", { class: "muted" }, src.mode),
      badge("state", src.healthy ? "READY" : "DEAD"),
      el("span", {}, `${src.providers.length} provider(s)${src.error ? ` · ${src.error}` : ""}`)));
  $("sources").replaceChildren(...(s.length ? s : [el("li", { class: "muted" }, "No discovery sources are configured.")]));
}

function describeEvent(e) {
  switch (e.type) {
    case "provider_event":
      return [e.provider, e.from === e.to ? `${e.cause}: ${e.detail}` : `${e.from} → ${e.to} (${e.cause}) ${e.detail}`];
    case "config_applied":
      return ["configuration", `generation ${e.generation} applied (${e.providers} providers)`];
    case "config_rejected":
      return ["configuration", `rejected (${e.trigger}): ${e.error}`];
    case "discovery":
      return [e.provider, `${e.action}${e.source !== null && e.source !== undefined ? ` by source ${e.source}` : ""}${e.detail ? `: ${e.detail}` : ""}`];
    case "access_denied":
      return [e.principal, `refused ${e.item} (${e.rule})`];
    case "lagged":
      return ["feed", `${e.missed} events were skipped (the page fell behind)`];
    default:
      return [e.type, JSON.stringify(e)];
  }
}

function addEvent(e, { prepend = true } = {}) {
  const [who, what] = describeEvent(e);
  const item = el("li", { "data-type": e.type },
    el("time", { datetime: new Date(e.at_ms || Date.now()).toISOString() }, fmtTime(e.at_ms || Date.now())),
    el("strong", {}, who),
    el("span", {}, what));
  const list = $("events");
  if (prepend) list.prepend(item);
  else list.append(item);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

// ---- loading ------------------------------------------------------------------------------

let refreshing = null;
let auditEnabled = false;
let refreshAgain = false;

async function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      const [o, s] = await Promise.all([api("/overview"), api("/stats")]);
      stats = s;
      auditEnabled = o.audit.enabled;
      keepingFocus(() => renderOverview(o));
      $("signin").hidden = true;
      if ($("notice").dataset.kind !== "action") notice("");
      return o;
    } catch (err) {
      if (!needCredentials(err)) notice(`The gateway did not answer: ${err.message}`);
    } finally {
      refreshing = null;
      if (refreshAgain) {
        refreshAgain = false;
        refresh();
      }
    }
  })();
  return refreshing;
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 150);
}

/** The list's first entries: the audit trail's latest records when it is written, else the
 * lifecycle events the gateway keeps in memory. */
async function loadRecentEvents(overview) {
  let records = (overview && overview.events) || [];
  if (auditEnabled) {
    try {
      records = (await api("/audit?limit=40")).records.filter((r) => r.type !== "tool_call");
    } catch (err) {
      needCredentials(err);
    }
  }
  for (const r of records) addEvent(r);
}

/** The live feed: SSE read through fetch (so it can carry the credentials). */
async function follow() {
  const live = $("live");
  for (;;) {
    try {
      const res = await fetch(API + "/events", { headers: { Accept: "text/event-stream", ...authHeaders() }, cache: "no-store" });
      if (!res.ok) throw new ApiError(res.status, `HTTP ${res.status}`);
      live.className = "live on";
      $("live-text").textContent = "live";
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
          if (!data) continue;
          const event = JSON.parse(data);
          if (event.type !== "hello") addEvent(event);
          refreshSoon();
        }
      }
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        live.className = "live off";
        $("live-text").textContent = "not signed in";
        await new Promise((r) => document.addEventListener("hangar-signed-in", r, { once: true }));
        continue;
      }
    }
    live.className = "live off";
    $("live-text").textContent = "reconnecting";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---- actions ------------------------------------------------------------------------------

async function act(path, what) {
  notice("");
  try {
    await api(path, { method: "POST" });
  } catch (err) {
    if (!needCredentials(err)) {
      $("notice").dataset.kind = "action";
      notice(`${what} failed: ${err.message}`);
    }
  }
  refresh();
}

async function approve(name) {
  await act(`/quarantine/${encodeURIComponent(name)}/approve`, `Approving ${name}`);
}

async function openReload() {
  const dialog = $("reload-dialog");
  $("reload-diff").textContent = "Asking what would change…";
  $("reload-result").textContent = "";
  $("reload-apply").disabled = true;
  dialog.showModal();
  try {
    const d = await api("/config/dry-run", { method: "POST", body: "" });
    $("reload-diff").textContent = d.text || "nothing would change";
    $("reload-apply").disabled = false;
  } catch (err) {
    $("reload-diff").textContent = err.message;
    needCredentials(err);
  }
}

async function applyReload() {
  $("reload-apply").disabled = true;
  $("reload-result").textContent = "Reloading…";
  try {
    const r = await api("/reload", { method: "POST" });
    const changed = r.added.length + r.removed.length + r.updated.length;
    $("reload-result").textContent = r.status === "success"
      ? `Applied: generation ${r.generation}, ${changed} provider(s) changed, in ${Math.round(r.duration_ms)} ms.`
      : "Nothing changed.";
  } catch (err) {
    $("reload-result").textContent = `Rejected; the running configuration stays. ${err.message}`;
  }
  refresh();
}

async function details(name) {
  const dialog = $("details-dialog");
  $("details-title").textContent = name;
  const body = $("details-body");
  body.replaceChildren(el("p", {}, "Loading…"));
  dialog.showModal();
  try {
    const d = await api(`/providers/${encodeURIComponent(name)}`);
    const facts = [
      ["Mode", d.mode], ["State", d.state], ["Circuit", d.circuit || "–"],
      ["Last error", d.last_error || "none"], ["Upstream", d.upstream ? `${d.upstream.era} ${d.upstream.version}` : "not contacted yet"],
    ];
    const checks = (d.health_history || []).slice(-10).reverse();
    body.replaceChildren(
      el("table", {}, el("tbody", {}, facts.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, v))))),
      el("h3", {}, "Health checks"),
      checks.length
        ? el("ul", { class: "plain" }, checks.map((c) => el("li", {}, el("time", {}, fmtTime(c.at_ms)), badge("state", c.ok ? "READY" : "DEAD"), fmtMs(c.duration_ms), c.error || "")))
        : el("p", { class: "muted" }, "None yet (checks run while the provider serves)."),
      el("h3", {}, "Lifecycle events"),
      el("ul", { class: "plain" }, (d.events || []).slice().reverse().map((e) => el("li", {}, el("time", {}, fmtTime(e.at_ms)), `${e.from} → ${e.to}`, el("span", { class: "muted" }, `${e.cause} ${e.detail}`)))));
  } catch (err) {
    body.replaceChildren(el("p", {}, err.message));
  }
}

// ---- start --------------------------------------------------------------------------------

function start() {
  $("reload-button").addEventListener("click", openReload);
  $("reload-apply").addEventListener("click", applyReload);
  $("signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(CREDENTIAL_KEY, JSON.stringify({ kind: $("credential-kind").value, value: $("credential").value }));
    $("credential").value = "";
    $("signin").hidden = true;
    document.dispatchEvent(new Event("hangar-signed-in"));
    refresh().then(loadRecentEvents);
  });
  refresh().then(loadRecentEvents);
  follow();
  setInterval(refresh, REFRESH_MS);
}

start();
