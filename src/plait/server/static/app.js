// plait dashboard: plain JavaScript, no framework, no build step, nothing from the network.
// Every piece of data from the store reaches the page as text (textContent, createTextNode,
// attribute values), never as HTML: a step named <script>…</script> shows as those characters.
"use strict";

const API = "/api/v1";
const SVGNS = "http://www.w3.org/2000/svg";
const state = { token: sessionStorage.getItem("plait-token") || "", page: null, cleanup: [] };

// -- DOM helpers ---------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// what replaceChildren is given: nodes only (it would show null as the text "null")
const nodes = (...items) => items.flat().filter((x) => x !== null && x !== undefined && x !== false);
const badge = (status) => h("span", { class: "badge " + status, "data-status": status }, status);
const json = (value) => h("pre", {}, value === undefined ? "" : JSON.stringify(value, null, 2));
const main = () => document.getElementById("main");

function when(iso) {
  if (!iso) return "";
  const d = typeof iso === "number" ? new Date(iso * 1000) : new Date(iso);
  return d.toLocaleString();
}

function span(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return Math.round(seconds * 1000) + " ms";
  if (seconds < 90) return seconds.toFixed(1) + " s";
  if (seconds < 5400) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function duration(run) {
  if (!run.created_at) return "";
  const end = run.finished_at ? new Date(run.finished_at) : new Date();
  return span((end - new Date(run.created_at)) / 1000);
}

function toast(message, error) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.className = "toast" + (error ? " error" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.add("hidden"), error ? 8000 : 3500);
}

// -- the API -------------------------------------------------------------------------------------

async function api(path, options) {
  const init = Object.assign({ headers: {} }, options || {});
  if (init.method && init.method !== "GET") {
    // the token, when the server has one; any value otherwise (see plait.server.app)
    init.headers["X-Plait-Token"] = state.token || "dashboard";
    if (init.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(init.body);
    }
  }
  const response = await fetch(API + path, init);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || response.statusText;
    const err = new Error(message);
    err.status = response.status;
    throw err;
  }
  return body;
}

async function act(path, body, what) {
  try {
    const result = await api(path, { method: "POST", body: body || {} });
    toast(what + ": done");
    return result;
  } catch (err) {
    toast(what + " refused: " + err.message, true);
    throw err;
  }
}

// A dialog that asks before acting: its fields (name → {label, value, textarea}), and the answer.
function ask(title, text, fields, okLabel) {
  const dialog = document.getElementById("dialog");
  const form = document.getElementById("dialog-form");
  const inputs = {};
  const rows = Object.entries(fields || {}).map(([name, f]) => {
    const input = f.textarea
      ? h("textarea", { name, placeholder: f.placeholder || "" })
      : h("input", { name, type: f.type || "text", placeholder: f.placeholder || "" });
    input.value = f.value || "";
    inputs[name] = input;
    return h("label", {}, f.label, input);
  });
  form.replaceChildren(...nodes(
    h("h2", {}, title),
    text ? h("p", {}, text) : null,
    ...rows,
    h("div", { class: "actions" },
      h("button", { type: "submit", value: "cancel", class: "secondary" }, "Cancel"),
      h("button", { type: "submit", value: "ok", id: "dialog-ok" }, okLabel || "OK"))));
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") return resolve(null);
      const values = {};
      for (const [k, input] of Object.entries(inputs)) values[k] = input.value;
      resolve(values);
    }, { once: true });
    dialog.showModal();
  });
}

function parseJSON(text, what) {
  if (!text || !text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    toast(what + " is not JSON: " + e.message, true);
    throw e;
  }
}

// -- live ------------------------------------------------------------------------------------------

function stream(path, handlers) {
  const source = new EventSource(API + path);
  const live = document.getElementById("live");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
  for (const [kind, fn] of Object.entries(handlers)) {
    source.addEventListener(kind, (e) => fn(JSON.parse(e.data), e.lastEventId));
  }
  state.cleanup.push(() => { source.close(); live.textContent = "offline"; live.className = "live off"; });
  return source;
}

// -- runs list --------------------------------------------------------------------------------------

const RUN_STATUSES = ["pending", "running", "pausing", "paused", "completed", "failed", "cancelled"];

async function runsPage(params) {
  const f = {
    workflow: params.get("workflow") || "",
    status: params.get("status") || "",
    q: params.get("q") || "",
    created_from: params.get("created_from") || "",
    created_to: params.get("created_to") || "",
    labels: params.getAll("label").join(" "),  // key=value, space-separated: runs with them all
  };
  const wanted = parseLabels(f.labels);
  const workflows = (await api("/workflows")).workflows;
  const names = [...new Set(workflows.map((w) => w.name))].sort();
  const input = (name, attrs) => {
    const el = h("input", Object.assign({ name }, attrs));
    el.value = f[name];
    return el;
  };
  const select = (name, options) => {
    const el = h("select", { name }, h("option", { value: "" }, "any"),
      options.map((o) => h("option", { value: o }, o)));
    el.value = f[name];
    return el;
  };
  const form = h("form", { class: "filters", id: "filters" },
    h("label", {}, "Workflow", select("workflow", names)),
    h("label", {}, "Status", select("status", RUN_STATUSES)),
    h("label", {}, "Search id, name or error", input("q", { placeholder: "text", id: "search" })),
    h("label", {}, "Labels", input("labels", { placeholder: "key=value …", id: "label-filter" })),
    h("label", {}, "Created from", input("created_from", { type: "datetime-local" })),
    h("label", {}, "Created before", input("created_to", { type: "datetime-local" })),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      if (k === "labels") for (const [lk, lv] of Object.entries(parseLabels(v))) p.append("label", lk + "=" + lv);
      else if (v) p.set(k, v);
    }
    location.hash = "#/runs?" + p.toString();
  });
  const query = new URLSearchParams({ limit: "50", count: "true" });
  for (const [k, v] of Object.entries(f)) {
    if (!v || k === "labels") continue;
    query.set(k, k.startsWith("created") ? new Date(v).toISOString() : v);
  }
  for (const [k, v] of Object.entries(wanted)) query.append("label", k + "=" + v);
  const tbody = h("tbody", { id: "runs-body" });
  const rows = new Map();
  const selected = new Set();
  const countText = h("span", { class: "muted", id: "run-count" });
  const table = h("table", { id: "runs" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "Run"), h("th", {}, "Labels"), h("th", {}, "Workflow"),
      h("th", {}, "Status"), h("th", {}, "Created"), h("th", {}, "Duration"), h("th", {}, "Error"))),
    tbody);
  const more = h("button", { class: "secondary", type: "button" }, "More");

  function row(run) {
    const box = h("input", { type: "checkbox", "aria-label": "select " + run.id });
    box.checked = selected.has(run.id);
    box.addEventListener("change", () => {
      if (box.checked) selected.add(run.id); else selected.delete(run.id);
      selection.textContent = selected.size ? selected.size + " selected" : "no selection: the filter";
    });
    const tr = h("tr", { "data-run": run.id },
      h("td", {}, box),
      h("td", {}, h("a", { href: "#/run/" + encodeURIComponent(run.id) }, run.id),
        run.name ? h("div", { class: "muted run-name" }, run.name) : null),
      h("td", { class: "labels" }, labelChips(run.labels)),
      h("td", {}, run.workflow + " v" + run.version),
      h("td", { class: "status" }, badge(run.status)),
      h("td", {}, when(run.created_at)),
      h("td", {}, duration(run)),
      h("td", { class: "muted" }, (run.error || "").slice(0, 120)));
    return tr;
  }
  function upsert(run, prepend) {
    const tr = row(run);
    const old = rows.get(run.id);
    if (old) old.replaceWith(tr);
    else if (prepend) tbody.prepend(tr);
    else tbody.append(tr);
    rows.set(run.id, tr);
  }
  let cursor = null;
  async function load() {
    if (cursor) query.set("cursor", cursor);
    const page = await api("/runs?" + query.toString());
    for (const run of page.runs) upsert(run, false);
    cursor = page.next_cursor;
    more.disabled = !cursor;
    if (page.count !== undefined) countText.textContent = page.count + " runs match";
  }
  more.addEventListener("click", load);

  // bulk actions: on the selection, or on the filter; a dry run counts first
  const selection = h("span", { class: "muted", id: "selection" }, "no selection: the filter");
  const action = h("select", { id: "bulk-action" },
    ["cancel", "pause", "resume", "retry", "delete"].map((a) => h("option", { value: a }, a)));
  const filterBody = () => {
    const body = {};
    if (f.workflow) body.workflow = f.workflow;
    if (f.status) body.status = f.status;
    if (f.q) body.text = f.q;
    if (Object.keys(wanted).length) body.labels = wanted;
    if (f.created_from) body.created_from = new Date(f.created_from).toISOString();
    if (f.created_to) body.created_to = new Date(f.created_to).toISOString();
    return body;
  };
  const bulkButton = h("button", { type: "button", id: "bulk-go" }, "Bulk…");
  bulkButton.addEventListener("click", async () => {
    const body = { action: action.value, dry_run: true };
    if (selected.size) body.run_ids = [...selected]; else body.filter = filterBody();
    const dry = await api("/bulk", { method: "POST", body });
    const skipped = Object.entries(dry.skipped_by_status).map(([k, v]) => v + " " + k).join(", ");
    const text = `${dry.matched} runs match; ${action.value} applies to ${dry.eligible}` +
      ` of the ${dry.selected} selected` + (skipped ? ` (skipped: ${skipped})` : "") +
      (dry.matched > dry.selected ? `. Only the newest ${dry.selected} are acted on per call.` : ".");
    const answer = await ask(`${action.value} ${dry.eligible} runs?`, text,
      { confirm: { label: `Type ${dry.eligible} to confirm`, placeholder: String(dry.eligible) } },
      action.value + " " + dry.eligible + " runs");
    if (!answer) return;
    if (answer.confirm.trim() !== String(dry.eligible)) { toast("not confirmed: nothing was done", true); return; }
    body.dry_run = false;
    const done = await api("/bulk", { method: "POST", body });
    const counts = {};
    for (const item of done.items) counts[item.outcome] = (counts[item.outcome] || 0) + 1;
    toast(action.value + ": " + Object.entries(counts).map(([k, v]) => v + " " + k).join(", "));
    selected.clear();
    route();
  });

  main().replaceChildren(
    h("h1", {}, "Runs ", countText),
    form,
    h("div", { class: "bulk" }, h("strong", {}, "Bulk"), selection, action, bulkButton),
    table,
    h("p", {}, more));
  await load();

  // live: a changed run is updated in place; a new one that fits the filter comes first
  const matches = (run) => (!f.workflow || run.workflow === f.workflow) &&
    (!f.status || run.status === f.status) &&
    Object.entries(wanted).every(([k, v]) => (run.labels || {})[k] === v) &&
    (!f.q || run.id.toLowerCase().includes(f.q.toLowerCase()) ||
      (run.name || "").toLowerCase().includes(f.q.toLowerCase()) ||
      (run.error || "").toLowerCase().includes(f.q.toLowerCase()));
  stream("/stream/runs", {
    run: (run) => {
      if (rows.has(run.id) || (matches(run) && !f.created_to)) upsert(run, !rows.has(run.id));
    },
  });
}

// a run's labels: "key=value" chips (text, never HTML); and the filter's "k=v k2=v2" as an object
const labelChips = (labels) => Object.entries(labels || {}).map(([k, v]) => h("span", { class: "chip" }, k + "=" + v));

function parseLabels(text) {
  const found = {};
  for (const part of (text || "").split(/[\s,]+/)) {
    const at = part.indexOf("=");
    if (at > 0) found[part.slice(0, at)] = part.slice(at + 1);
  }
  return found;
}

// -- a run ------------------------------------------------------------------------------------------

const STEP_STATUS_OF = {
  step_started: "running", step_completed: "done", step_failed: "failed", step_retrying: "ready",
  step_waiting: "waiting", step_skipped: "skipped", step_cancelled: "cancelled", step_approved: "ready",
  step_rejected: "failed", step_reset: "pending", step_retried: "ready", step_released: "ready",
  step_lease_expired: "ready", step_reopened: "waiting",
};

async function runPage(runId, params) {
  let run = await api("/runs/" + encodeURIComponent(runId));
  const header = h("div", {});
  const tabsEl = h("div", { class: "tabs" });
  const panel = h("div", { class: "tabpanel", id: "tabpanel" });
  const waitingBox = h("div", { id: "blockers" });
  const diffBox = h("div", { id: "diff" });
  let tab = params.get("tab") || "graph";
  let graphData = null;
  let selectedNode = null;
  const expanded = new Set();
  let lastSeq = 0;
  const eventsList = h("tbody", { id: "events-body" });
  const stateHistory = h("tbody", { id: "state-history" });  // its state_changed events

  function renderHeader() {
    const buttons = [];
    const active = ["pending", "running", "pausing", "paused"].includes(run.status);
    if (active) buttons.push(h("button", { class: "danger", id: "cancel-run", onclick: cancelRun }, "Cancel run"));
    if (run.status === "pending" || run.status === "running") buttons.push(h("button", { class: "secondary", id: "pause-run", onclick: () => simple("pause") }, "Pause"));
    if (run.status === "paused" || run.status === "pausing") buttons.push(h("button", { class: "secondary", id: "resume-run", onclick: () => simple("resume") }, "Resume"));
    if (!active) buttons.push(h("button", { class: "secondary", id: "delete-run", onclick: deleteRun }, "Delete"));
    header.replaceChildren(
      h("h1", {}, h("span", { id: "run-id" }, run.id), h("span", { id: "run-status" }, badge(run.status))),
      h("div", { class: "card" },
        h("div", { class: "kv" },
          run.name ? h("div", {}, "name") : null, run.name ? h("div", { id: "run-name" }, run.name) : null,
          Object.keys(run.labels || {}).length ? h("div", {}, "labels") : null,
          Object.keys(run.labels || {}).length ? h("div", { id: "run-labels" }, labelChips(run.labels)) : null,
          h("div", {}, "workflow"), h("div", {}, run.workflow + " v" + run.version),
          h("div", {}, "created"), h("div", {}, when(run.created_at)),
          h("div", {}, "finished"), h("div", {}, when(run.finished_at) || "—"),
          h("div", {}, "duration"), h("div", {}, duration(run)),
          run.parent_run ? h("div", {}, "forked from") : null,
          run.parent_run ? h("div", {}, h("a", { href: "#/run/" + encodeURIComponent(run.parent_run) }, run.parent_run), " at step " + run.forked_from) : null,
          run.error ? h("div", {}, "error") : null, run.error ? h("div", {}, run.error) : null,
        ),
        h("details", {}, h("summary", {}, "input / output"), h("div", {}, "input"), json(run.input), h("div", {}, "output"), json(run.output)),
        h("div", { class: "actions" }, buttons)));
  }
  async function refreshRun() {
    run = await api("/runs/" + encodeURIComponent(runId));
    renderHeader();
    if (tab === "state") drawState();
    loadBlockers();
  }
  async function simple(what) {
    await act("/runs/" + encodeURIComponent(runId) + "/" + what, {}, what);
    refreshRun();
  }
  async function cancelRun() {
    const answer = await ask("Cancel run " + run.id + "?", "Its waiting steps end cancelled; running ones are interrupted.", { reason: { label: "Reason (optional)" } }, "Cancel run");
    if (!answer) return;
    await act("/runs/" + encodeURIComponent(runId) + "/cancel", { reason: answer.reason || null }, "cancel");
    refreshRun();
  }
  async function deleteRun() {
    const answer = await ask("Delete run " + run.id + "?", "Its steps, events and artifacts are deleted for good.", {}, "Delete");
    if (!answer) return;
    await api("/runs/" + encodeURIComponent(runId), { method: "DELETE" }).catch((e) => { toast(e.message, true); throw e; });
    location.hash = "#/runs";
  }

  // "why is this not moving?", for every unfinished step, in words
  async function loadBlockers() {
    const seen = await api("/runs/" + encodeURIComponent(runId) + "/inspect");
    const entries = Object.entries(seen.blockers);
    if (!entries.length) { waitingBox.replaceChildren(); return; }
    const shown = entries.slice(0, 12);
    waitingBox.replaceChildren(h("div", { class: "why" }, h("strong", {}, "Why isn't it moving?"),
      h("ul", {}, shown.map(([step, why]) => h("li", {}, h("a", { href: "#", onclick: (e) => { e.preventDefault(); openStep(step); } }, step), ": " + why.join("; ")))),
      entries.length > shown.length ? h("div", { class: "muted" }, (entries.length - shown.length) + " more steps wait") : null));
  }

  async function loadDiff() {
    const against = params.get("diff") || run.parent_run;
    if (!against) { diffBox.replaceChildren(); return; }
    const diff = (await api("/runs/" + encodeURIComponent(against) + "/diff/" + encodeURIComponent(runId))).steps;
    const changed = Object.entries(diff).filter(([, d]) => d.status !== "same");
    diffBox.replaceChildren(h("div", { class: "card", id: "diff-card" },
      h("h2", {}, "Diff against " + against + ": " + changed.length + " of " + Object.keys(diff).length + " steps differ"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Step"), h("th", {}, "Difference"), h("th", {}, "Where"))),
        h("tbody", {}, changed.map(([step, d]) => h("tr", { class: "diff-changed", "data-step": step },
          h("td", {}, step), h("td", {}, d.status),
          h("td", {}, (d.diff || []).slice(0, 6).map((x) => h("div", { class: "mono" }, x.op + " " + x.path + ": " + JSON.stringify(x.a) + " → " + JSON.stringify(x.b))))))))));
  }

  // -- graph
  async function loadGraph() {
    const query = [...expanded].map((g) => "expand=" + encodeURIComponent(g)).join("&");
    graphData = await api("/runs/" + encodeURIComponent(runId) + "/graph" + (query ? "?" + query : ""));
    if (tab === "graph") drawGraph();
  }
  function drawGraph() {
    const g = graphData;
    const byId = new Map(g.nodes.map((n) => [n.id, n]));
    const svg = s("svg", { width: g.width, height: g.height, id: "graph-svg", role: "img" });
    svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#9aa3b5" }))));
    for (const e of g.edges) {
      const a = byId.get(e.from), b = byId.get(e.to);
      if (!a || !b) continue;
      const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2;
      const mx = (x1 + x2) / 2;
      svg.append(s("path", { class: "edge " + e.kind, d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
    }
    for (const n of g.nodes) {
      const label = n.label.length > 26 ? n.label.slice(0, 25) + "…" : n.label;
      const sub = n.group
        ? Object.entries(n.counts).map(([k, v]) => v + " " + k).join(" · ")
        : n.status + (n.attempts > 1 ? " · " + n.attempts + " attempts" : "");
      const node = s("g", { class: "node" + (n.group ? " group" : "") + (n.id === selectedNode ? " selected" : ""), "data-node": n.id, "data-status": n.status, transform: `translate(${n.x},${n.y})`, onclick: () => (n.group ? toggleGroup(n) : openStep(n.id)) },
        s("rect", { width: n.w, height: n.h, class: "fill-" + n.status }),
        s("text", { x: 8, y: 17 }, label),
        s("text", { x: 8, y: 34, fill: "#556" }, sub.length > 34 ? sub.slice(0, 33) + "…" : sub),
        s("title", {}, n.group ? n.label + ": " + sub + " (click to expand)" : n.id + ": " + n.status));
      svg.append(node);
    }
    const note = g.nodes.some((n) => n.group)
      ? h("p", { class: "muted" }, g.steps + " steps; dashed nodes group alike steps (click one to expand it, up to 500).")
      : h("p", { class: "muted" }, g.steps + " steps. Click a step for its inputs, output, attempts and events.");
    panel.replaceChildren(note, h("div", { class: "graph" }, svg));
  }
  function toggleGroup(n) {
    if (expanded.has(n.id)) expanded.delete(n.id); else expanded.add(n.id);
    loadGraph();
  }
  function setNodeStatus(step, status) {
    if (!graphData) return false;
    const n = graphData.nodes.find((x) => x.id === step && !x.group);
    if (!n) return false;
    n.status = status;
    const el = document.querySelector(`[data-node="${CSS.escape(step)}"]`);
    if (el) {
      el.setAttribute("data-status", status);
      el.querySelector("rect").setAttribute("class", "fill-" + status);
      el.querySelectorAll("text")[1].textContent = status;
    }
    return true;
  }

  // -- timeline: one bar per attempt, queued (grey) then running (coloured by outcome)
  async function drawTimeline() {
    const t = await api("/runs/" + encodeURIComponent(runId) + "/timeline");
    const bars = t.bars;
    const start = Math.min(t.start, ...bars.map((b) => b.queued_at || b.started_at));
    const end = Math.max(t.end, ...bars.map((b) => b.ended_at || t.end));
    const width = 900, left = 220, rowH = 20;
    const x = (ts) => left + ((ts - start) / Math.max(end - start, 0.001)) * width;
    const svg = s("svg", { width: left + width + 20, height: bars.length * rowH + 40, id: "timeline-svg" });
    bars.forEach((b, i) => {
      const y = 20 + i * rowH;
      const label = (b.step.length > 28 ? b.step.slice(0, 27) + "…" : b.step) + (b.attempt > 1 ? " #" + b.attempt : "");
      svg.append(s("text", { x: 4, y: y + 13 }, label));
      if (b.queued_at !== null && b.started_at !== null && b.started_at > b.queued_at) {
        svg.append(s("rect", { class: "bar-queued", x: x(b.queued_at), y: y + 3, width: Math.max(1, x(b.started_at) - x(b.queued_at)), height: 12 }, s("title", {}, "queued " + span(b.started_at - b.queued_at))));
      }
      const stop = b.ended_at || t.end;
      svg.append(s("rect", { class: "bar-" + b.outcome, x: x(b.started_at), y: y + 3, width: Math.max(2, x(stop) - x(b.started_at)), height: 12, "data-step": b.step },
        s("title", {}, b.step + " attempt " + b.attempt + ": " + b.outcome + " after " + span(stop - b.started_at) + (b.worker ? " on " + b.worker : "") + (b.code ? " (" + b.code + ")" : ""))));
    });
    svg.append(s("text", { x: left, y: 12, fill: "#667" }, when(start)), s("text", { x: left + width - 140, y: 12, fill: "#667" }, span(end - start)));
    panel.replaceChildren(h("p", { class: "muted" }, bars.length + (t.total > bars.length ? " of " + t.total : "") + " attempts; grey: waiting claimable (queued), colour: running until its outcome."), svg);
  }

  function drawEvents() {
    panel.replaceChildren(h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "When"), h("th", {}, "Type"), h("th", {}, "Step"), h("th", {}, "Details"))), eventsList));
  }
  function drawState() {
    panel.replaceChildren(
      h("h3", {}, "Session state"), h("div", { id: "run-state" }, json(run.state || {})),
      h("h3", {}, "History"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "When"), h("th", {}, "Step"), h("th", {}, "Change"), h("th", {}, "Key"), h("th", {}, "Value"))), stateHistory));
  }
  function addEvent(e) {
    lastSeq = Math.max(lastSeq, e.seq);
    if (e.type === "state_changed") {
      const p = e.payload;
      stateHistory.append(h("tr", { "data-seq": e.seq }, h("td", {}, e.seq), h("td", {}, when(e.ts)), h("td", {}, e.step || ""),
        h("td", {}, p.op), h("td", { class: "mono" }, p.key), h("td", { class: "mono" }, JSON.stringify(p.value))));
    }
    const details = Object.assign({}, e.payload);
    delete details.step;
    const tb = details.traceback;
    delete details.traceback;
    eventsList.append(h("tr", { "data-seq": e.seq }, h("td", {}, e.seq), h("td", {}, when(e.ts)), h("td", {}, e.type),
      h("td", {}, e.step ? h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); openStep(e.step); } }, e.step) : ""),
      h("td", { class: "mono" }, JSON.stringify(details), tb ? h("details", {}, h("summary", {}, "traceback"), h("pre", {}, tb)) : null)));
  }

  function showTab(name) {
    tab = name;
    for (const b of tabsEl.children) b.classList.toggle("active", b.dataset.tab === name);
    if (name === "graph") (graphData ? drawGraph() : loadGraph());
    else if (name === "timeline") drawTimeline();
    else if (name === "state") drawState();
    else drawEvents();
  }
  tabsEl.replaceChildren(...["graph", "timeline", "events", "state"].map((name) =>
    h("button", { type: "button", "data-tab": name, id: "tab-" + name, onclick: () => showTab(name) }, name[0].toUpperCase() + name.slice(1))));

  async function openStep(step) {
    selectedNode = step;
    if (tab === "graph" && graphData) drawGraph();
    await stepDrawer(runId, step, { refresh: () => { refreshRun(); loadGraph(); }, fork: forkFrom });
  }
  async function forkFrom(step) {
    const answer = await ask("Fork " + runId + " from " + step, "A new run reuses every recorded output but this step's and those downstream of it, and runs them again.",
      { input: { label: "New input (JSON, empty: the same)", textarea: true }, overrides: { label: "Overrides {step: output} (JSON, optional)", textarea: true } }, "Fork");
    if (!answer) return;
    const body = { from_step: step };
    const input = parseJSON(answer.input, "the input");
    const overrides = parseJSON(answer.overrides, "the overrides");
    if (input !== undefined) body.input = input;
    if (overrides !== undefined) body.overrides = overrides;
    const fork = await act("/runs/" + encodeURIComponent(runId) + "/fork", body, "fork");
    closeDrawer();
    location.hash = "#/run/" + encodeURIComponent(fork.id) + "?diff=" + encodeURIComponent(runId);
  }

  renderHeader();
  main().replaceChildren(header, waitingBox, diffBox, tabsEl, panel);
  await loadGraph();  // its last_seq: the live stream starts after it
  const first = await api("/runs/" + encodeURIComponent(runId) + "/events?limit=1000");
  for (const e of first.events) if (e.seq <= graphData.last_seq) addEvent(e);
  lastSeq = graphData.last_seq;
  showTab(tab);
  loadBlockers();
  loadDiff();

  // live: every committed event; node colours follow at once, the rest is re-read (throttled)
  let pending = null;
  const later = (fn, ms) => { if (!pending) pending = setTimeout(() => { pending = null; fn(); }, ms); };
  const source = stream("/runs/" + encodeURIComponent(runId) + "/stream?after_seq=" + lastSeq, {
    event: (e) => {
      if (e.seq <= lastSeq) return;
      addEvent(e);
      const status = STEP_STATUS_OF[e.type];
      const drawn = e.step && status && tab === "graph" && setNodeStatus(e.step, status);
      if (e.type.startsWith("run_") || e.type === "step_waiting" || e.type === "state_changed") later(() => { refreshRun(); loadDiff(); }, 150);
      if (!drawn || e.type === "steps_spawned") later(() => { loadGraph(); loadBlockers(); }, graphData && graphData.steps > 2000 ? 2000 : 300);
      if (selectedNode && e.step === selectedNode) later(() => openStep(selectedNode), 200);
    },
    end: () => {
      source.close();  // the run has ended: nothing more will come (a retry reopens the page)
      const live = document.getElementById("live");
      live.textContent = "ended"; live.className = "live off";
      refreshRun(); loadGraph(); loadDiff();
    },
  });
}

// -- the step drawer --------------------------------------------------------------------------------

function closeDrawer() {
  const d = document.getElementById("drawer");
  d.classList.add("hidden");
  d.replaceChildren();
}

async function stepDrawer(runId, step, hooks) {
  const d = document.getElementById("drawer");
  const base = "/runs/" + encodeURIComponent(runId) + "/steps/" + encodeURIComponent(step);
  const detail = await api(base);
  const st = detail.step;
  const buttons = [];
  if (st.status === "waiting" && st.gate === "approval") {
    buttons.push(h("button", { id: "approve-step", onclick: async () => {
      const a = await ask("Approve " + step + "?", "It runs once its run dispatches it.", { note: { label: "Note (optional)" } }, "Approve");
      if (!a) return;
      await act(base + "/approve", { note: a.note || null }, "approve");
      hooks.refresh(); stepDrawer(runId, step, hooks);
    } }, "Approve"));
    buttons.push(h("button", { class: "danger", id: "reject-step", onclick: async () => {
      const a = await ask("Reject " + step + "?", "It fails with code rejected; its dependents are skipped.", { reason: { label: "Reason" } }, "Reject");
      if (!a) return;
      await act(base + "/reject", { reason: a.reason || null }, "reject");
      hooks.refresh(); stepDrawer(runId, step, hooks);
    } }, "Reject"));
  }
  if (st.status === "waiting" && st.gate === "signal") {
    buttons.push(h("button", { id: "signal-step", onclick: async () => {
      const a = await ask("Signal " + step, "Deliver its payload (the first delivery counts).", { payload: { label: "Payload (JSON)", textarea: true } }, "Send");
      if (!a) return;
      await act("/runs/" + encodeURIComponent(runId) + "/signals/" + encodeURIComponent(step), { payload: parseJSON(a.payload, "the payload") ?? null }, "signal");
      hooks.refresh(); stepDrawer(runId, step, hooks);
    } }, "Send signal"));
  }
  if (st.status === "failed") {
    buttons.push(h("button", { id: "retry-step", onclick: async () => {
      const a = await ask("Retry " + step + "?", "It runs again with a fresh attempt budget; the steps its failure skipped wait for it again.", {}, "Retry");
      if (!a) return;
      await act(base + "/retry", {}, "retry");
      hooks.refresh(); stepDrawer(runId, step, hooks);
    } }, "Retry step"));
  }
  buttons.push(h("button", { class: "secondary", id: "fork-step", onclick: () => hooks.fork(step) }, "Fork from here"));
  const error = st.error;
  const lastFailure = [...detail.events].reverse().find((e) => e.payload && e.payload.traceback);
  d.replaceChildren(...nodes(
    h("div", { class: "actions" }, h("span", { class: "spacer" }), h("button", { class: "ghost", id: "close-drawer", onclick: closeDrawer }, "Close")),
    h("h2", { id: "drawer-title" }, step, " ", badge(st.status)),
    detail.why && detail.why.length ? h("div", { class: "why", id: "why" }, h("strong", {}, "Why isn't it moving?"), h("ul", {}, detail.why.map((w) => h("li", {}, w)))) : null,
    h("div", { class: "actions" }, buttons),
    h("div", { class: "kv" },
      h("div", {}, "attempts"), h("div", {}, String(st.attempts)),
      h("div", {}, "worker"), h("div", {}, st.worker || "—"),
      h("div", {}, "queued"), h("div", {}, span(st.queued) || "—"),
      h("div", {}, "ran for"), h("div", {}, span(st.duration) || "—"),
      st.task ? h("div", {}, "task") : null, st.task ? h("div", {}, st.task + (st.parent ? " (spawned by " + st.parent + ")" : "")) : null,
      st.reused_from ? h("div", {}, "reused from") : null, st.reused_from ? h("div", {}, st.reused_from) : null,
      st.skip_reason ? h("div", {}, "skipped") : null, st.skip_reason ? h("div", {}, st.skip_reason) : null),
    error ? h("div", {}, h("h3", {}, "Error"), h("pre", { id: "step-error" }, error.code + ": " + error.message)) : null,
    lastFailure ? h("details", { open: true }, h("summary", {}, "Traceback"), h("pre", { id: "traceback" }, lastFailure.payload.traceback)) : null,
    h("h3", {}, "Inputs"),
    h("div", { class: "muted" }, "dependencies: " + (detail.dependencies.map((x) => x.name + " (" + x.status + ")").join(", ") || "none")),
    json(Object.keys(detail.inputs).length ? detail.inputs : detail.run.input),
    detail.spawned_input !== null ? h("div", {}, h("div", { class: "muted" }, "spawned with"), json(detail.spawned_input)) : null,
    h("h3", {}, "Output"), h("div", { id: "step-output" }, json(st.output)),
    h("h3", {}, "Attempts"),
    h("table", { id: "attempts" }, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Outcome"), h("th", {}, "Queued"), h("th", {}, "Ran"), h("th", {}, "Worker"))),
      h("tbody", {}, detail.attempts.filter((a) => a.step === step).map((a) => h("tr", {}, h("td", {}, a.attempt), h("td", {}, a.outcome + (a.code ? " (" + a.code + ")" : "")),
        h("td", {}, span(a.started_at - a.queued_at)), h("td", {}, a.ended_at ? span(a.ended_at - a.started_at) : "running"), h("td", {}, a.worker || ""))))),
    detail.artifacts.length ? h("div", {}, h("h3", {}, "Artifacts"), h("ul", {}, detail.artifacts.map((a) =>
      h("li", {}, h("a", { href: API + "/artifacts/" + encodeURIComponent(a.id), download: a.name }, a.name), " " + a.size + " bytes, " + a.content_type)))) : null,
    h("h3", {}, "Events"),
    h("table", {}, h("tbody", {}, detail.events.map((e) => h("tr", {}, h("td", {}, e.seq), h("td", {}, e.type), h("td", { class: "mono" }, JSON.stringify(Object.fromEntries(Object.entries(e.payload).filter(([k]) => k !== "traceback" && k !== "step"))))))))));
  d.classList.remove("hidden");
}

// -- failed steps, workers, queues, schedules ------------------------------------------------------------

async function failedPage(params) {
  const workflow = params.get("workflow") || "";
  const body = h("tbody", {});
  const more = h("button", { class: "secondary" }, "More");
  let cursor = null;
  async function load() {
    const q = new URLSearchParams({ limit: "50" });
    if (workflow) q.set("workflow", workflow);
    if (cursor) q.set("cursor", cursor);
    const page = await api("/failed-steps?" + q.toString());
    for (const f of page.steps) {
      body.append(h("tr", {}, h("td", {}, when(f.finished_at)),
        h("td", {}, h("a", { href: "#/run/" + encodeURIComponent(f.run_id) }, f.run_id)),
        h("td", {}, f.workflow), h("td", {}, f.step), h("td", {}, f.error.code), h("td", {}, f.error.message.slice(0, 200)), h("td", {}, f.attempts)));
    }
    cursor = page.next_cursor;
    more.disabled = !cursor;
  }
  more.addEventListener("click", load);
  main().replaceChildren(h("h1", {}, "Failed steps"), h("table", { id: "failed" }, h("thead", {}, h("tr", {},
    ["Ended", "Run", "Workflow", "Step", "Code", "Message", "Attempts"].map((t) => h("th", {}, t)))), body), h("p", {}, more));
  await load();
}

async function workersPage() {
  const found = (await api("/workers?include_dead=true")).workers;
  main().replaceChildren(h("h1", {}, "Workers"), found.length ? h("table", { id: "workers" },
    h("thead", {}, h("tr", {}, ["Worker", "State", "Host", "Serves", "Queues", "Labels", "Slots", "Heartbeat"].map((t) => h("th", {}, t)))),
    h("tbody", {}, found.map((w) => h("tr", {}, h("td", { class: "mono" }, w.id), h("td", {}, badge(w.live ? "running" : "failed"), w.live ? " live" : " dead"),
      h("td", {}, w.host + " pid " + w.pid), h("td", {}, w.workflows.map((x) => x.name + " v" + x.version).join(", ")),
      h("td", {}, w.queues ? w.queues.join(", ") : "all"), h("td", {}, w.labels.join(", ") || "—"), h("td", {}, w.concurrency),
      h("td", {}, when(w.heartbeat_at))))))
    : h("p", { class: "card" }, "No worker is registered with this store. Start one: plait worker app.py"));
}

async function queuesPage() {
  const found = (await api("/queues")).queues;
  const form = h("form", { class: "filters", id: "queue-form" },
    h("label", {}, "Queue", h("input", { name: "name", required: true })),
    h("label", {}, "Concurrency", h("input", { name: "concurrency", type: "number", min: 1 })),
    h("label", {}, "Rate (starts)", h("input", { name: "count", type: "number", min: 0, step: "any" })),
    h("label", {}, "per seconds", h("input", { name: "per", type: "number", min: 0, step: "any", value: 1 })),
    h("button", { type: "submit" }, "Set limits"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = Object.fromEntries(new FormData(form));
    const body = { concurrency: v.concurrency ? Number(v.concurrency) : null, rate: v.count ? { count: Number(v.count), per: Number(v.per || 1) } : null };
    await api("/queues/" + encodeURIComponent(v.name), { method: "PUT", body }).then(() => toast("queue " + v.name + " set"), (err) => toast(err.message, true));
    queuesPage();
  });
  main().replaceChildren(h("h1", {}, "Queues"), h("table", { id: "queues" },
    h("thead", {}, h("tr", {}, ["Queue", "Concurrency", "Rate", "Ready", "Running", "Waiting", "Oldest ready"].map((t) => h("th", {}, t)))),
    h("tbody", {}, found.map((q) => h("tr", {}, h("td", {}, q.name + (q.configured ? "" : " (not configured)")), h("td", {}, q.concurrency ?? "—"),
      h("td", {}, q.rate ? q.rate.count + " per " + q.rate.per + " s" : "—"), h("td", {}, q.ready), h("td", {}, q.running), h("td", {}, q.waiting),
      h("td", {}, q.oldest_ready_age === null ? "—" : span(q.oldest_ready_age)))))),
    h("h2", {}, "Set a queue's limits"), form);
}

async function schedulesPage() {
  const found = (await api("/schedules")).schedules;
  const act2 = (name, what) => async () => {
    if (what === "delete") {
      if (!(await ask("Delete schedule " + name + "?", "Its runs stay.", {}, "Delete"))) return;
      await api("/schedules/" + encodeURIComponent(name), { method: "DELETE" }).catch((e) => toast(e.message, true));
    } else {
      await act("/schedules/" + encodeURIComponent(name) + "/" + what, {}, what).catch(() => null);
    }
    schedulesPage();
  };
  main().replaceChildren(h("h1", {}, "Schedules"), found.length ? h("table", { id: "schedules" },
    h("thead", {}, h("tr", {}, ["Schedule", "Workflow", "Cron", "Timezone", "State", "Next tick", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, found.map((sc) => h("tr", {}, h("td", {}, sc.name), h("td", {}, sc.workflow), h("td", { class: "mono" }, sc.cron), h("td", {}, sc.timezone),
      h("td", {}, sc.paused ? badge("paused") : badge("running")), h("td", {}, when(sc.next_at)),
      h("td", { class: "actions" }, sc.paused ? h("button", { class: "secondary", onclick: act2(sc.name, "resume") }, "Resume") : h("button", { class: "secondary", onclick: act2(sc.name, "pause") }, "Pause"),
        h("button", { class: "danger", onclick: act2(sc.name, "delete") }, "Delete"))))))
    : h("p", { class: "card" }, "No schedule. Add one with plait schedules add, or PUT /api/v1/schedules/NAME."));
}

// -- routing -------------------------------------------------------------------------------------------

async function route() {
  for (const fn of state.cleanup.splice(0)) fn();
  const hash = location.hash || "#/runs";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] || "runs";
  for (const a of document.querySelectorAll("nav a[data-page]")) a.classList.toggle("active", a.dataset.page === page || (page === "run" && a.dataset.page === "runs"));
  if (page !== "run") closeDrawer();
  try {
    if (page === "run") await runPage(decodeURIComponent(parts.slice(1).join("/")), params);
    else if (page === "failed") await failedPage(params);
    else if (page === "workers") await workersPage();
    else if (page === "queues") await queuesPage();
    else if (page === "schedules") await schedulesPage();
    else await runsPage(params);
    document.body.dataset.ready = page;
  } catch (err) {
    main().replaceChildren(h("div", { class: "card", id: "page-error" }, h("h1", {}, "Cannot show this page"), h("p", {}, err.message)));
    document.body.dataset.ready = "error";
  }
}

document.getElementById("token-button").addEventListener("click", async () => {
  const answer = await ask("Token", "Mutating calls send it in the X-Plait-Token header (kept for this tab only).", { token: { label: "Token", type: "password" } }, "Save");
  if (answer) {
    state.token = answer.token;
    sessionStorage.setItem("plait-token", answer.token);
    toast(answer.token ? "token set" : "token cleared");
  }
});
window.addEventListener("hashchange", route);
route();
