// The rollout dashboard: it follows /api/stream (server-sent events: a
// snapshot, then differences twice a second at most) and draws the
// change's phases, checks, instances, charts and event log. The buttons
// post to /api/control with the admin token typed here; the token stays
// in this page's memory and is never stored.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./style.css";

const $ = (id) => document.getElementById(id);

// Every state is shown by a word and a symbol, never by colour alone.
// The symbols are in DejaVu Sans (Debian's default font): no emoji, which
// a machine without an emoji font draws as empty boxes.
const SYMBOL = {
  running: "▶", "rolling-back": "↺", paused: "‖", waiting: "◔", failed: "✗",
  succeeded: "✓", "rolled-back": "↺✓", "rollback-failed": "✗✗", aborted: "■",
  pending: "○", done: "✓", skipped: "–",
};

const state = {
  view: null,
  nodes: new Map(), // id -> row data
  rows: new Map(), // id -> <tr>
  orderDirty: true,
  events: [],
  types: new Set(),
  points: [],
  dirty: new Set(),
  token: "",
};

// Render times, for the browser test's trace: {what, ms, rows}.
window.__dash = { renders: [], updates: 0, ready: false };

function badge(el, status) {
  const s = status || "unknown";
  el.textContent = `${SYMBOL[s] || "•"} ${s}`;
  el.dataset.status = s;
  el.className = "badge st-" + s.replace(/[^a-z-]/g, "");
}

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const time = d.toLocaleTimeString([], { hour12: false });
  // A time more than a day away (a window planned days ahead, or one
  // long past) is ambiguous without its date.
  if (Math.abs(d - Date.now()) < 86400000) return time;
  return `${d.toISOString().slice(0, 10)} ${time}`;
}

function rel(iso) {
  if (!iso) return "";
  const ms = new Date(iso) - Date.now();
  const s = Math.round(Math.abs(ms) / 1000);
  const txt = s < 90 ? `${s}s` : s < 5400 ? `${Math.round(s / 60)}m` : s < 172800 ? `${(s / 3600).toFixed(1)}h` : `${Math.round(s / 86400)}d`;
  return ms >= 0 ? `in ${txt}` : `${txt} ago`;
}

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

function timed(what, rows, fn) {
  const t0 = performance.now();
  fn();
  const ms = performance.now() - t0;
  const r = window.__dash.renders;
  r.push({ what, ms, rows });
  if (r.length > 2000) r.splice(0, r.length - 2000);
}

// ---- header, phases and checks ----

function renderView() {
  const v = state.view;
  if (!v) return;
  $("change").textContent = v.change || "wsfleet rollout";
  document.title = `${v.change || "wsfleet"}: ${v.status || "…"}`;
  badge($("status"), v.read_failed && !v.status ? "unknown" : v.status);
  $("summary").textContent = v.change
    ? `group ${v.group} · image ${v.old_image} → ${v.new_image}` +
      (v.strategy ? ` · ${v.strategy}` : "") + (v.drain ? ` · drain ${v.drain}` : "") +
      (v.started ? ` · started ${fmtTime(v.started)}` : "") + (v.ended && v.ended !== "0001-01-01T00:00:00Z" ? ` · ended ${fmtTime(v.ended)}` : "")
    : "";
  $("where").textContent = v.change ? `${v.rollback ? "rollback: " : ""}${v.where}` : (v.read_failed || "");
  $("waiting").textContent = v.waiting ? `waiting: ${v.waiting}` : (v.processes ? `processes: ${v.processes}` : "");
  const f = $("failure");
  f.hidden = !v.failure;
  f.textContent = v.failure ? `✗ failure: ${v.failure}` : "";
  if (v.pending) $("waiting").textContent += ` · command waiting for the engine: ${v.pending}`;
  for (const b of document.querySelectorAll("[data-action]")) {
    b.disabled = !v.controls || v.final || !v.change;
    b.title = !v.controls ? "No admin token is set for this dashboard: commands are off" : b.title;
  }

  const ol = $("phases");
  ol.replaceChildren();
  for (const p of v.phases) {
    const li = el("li", { class: "phase" + (p.current ? " current" : ""), "data-phase": p.name, "data-status": p.status });
    if (p.current) li.setAttribute("aria-current", "step");
    const b = el("span", {});
    badge(b, p.status);
    li.append(el("h3", {}, el("span", { text: p.name }), " ", b, p.current ? el("span", { class: "now", text: " ◀ now" }) : ""));
    const facts = [];
    if (p.replace) facts.push(`replace ${p.replace}`);
    if (p.bake) facts.push(`bake ${p.bake}`);
    if (p.not_before) facts.push(`window from ${fmtTime(p.not_before)} (${rel(p.not_before)})`);
    if (p.deadline) facts.push(`deadline ${p.deadline}` + (p.deadline_at ? ` (${fmtTime(p.deadline_at)}${p.ended ? "" : ", " + rel(p.deadline_at)})` : ""));
    if (p.started) facts.push(`began ${fmtTime(p.started)}`);
    if (p.ended) facts.push(`ended ${fmtTime(p.ended)}`);
    if (p.replaced) facts.push(`${p.replaced} replaced`);
    li.append(el("p", { class: "muted", text: facts.join(" · ") }));
    if (p.checks && p.checks.length) {
      const ul = el("ul", { class: "verdicts" });
      for (const c of p.checks) ul.append(el("li", { class: c.pass ? "pass" : "fail", text: `${c.pass ? "✓ pass" : "✗ FAIL"} ${c.name}: ${c.detail}` }));
      li.append(ul);
    }
    ol.append(li);
  }

  const tb = $("checks").tBodies[0];
  tb.replaceChildren();
  if (!v.checks.length) tb.append(el("tr", {}, el("td", { colspan: "5", class: "muted", text: "no checks in the plan" })));
  for (const c of v.checks) {
    const last = c.last;
    tb.append(el("tr", { "data-check": c.name },
      el("th", { scope: "row", text: c.name }),
      el("td", { text: c.describe || "" }),
      el("td", { class: last ? (last.pass ? "pass" : "fail") : "muted", text: last ? (last.pass ? "✓ pass" : "✗ FAIL") : "○ not run yet" }),
      el("td", { text: last ? last.detail : "" }),
      el("td", { text: last ? fmtTime(last.at) : "" })));
  }
}

// ---- instances ----

const YES = "● yes", NO = "–";

function fillRow(tr, n) {
  const cells = [n.name || "–", n.id, n.image, n.lifecycle, n.health || "–", n.state || "–", String(n.connections),
    n.protected ? YES : NO, n.draining ? "⇣ draining" : NO];
  if (!tr.cells.length) {
    cells.forEach((c, i) => tr.append(el(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : i === 6 ? { class: "num" } : {})));
  }
  cells.forEach((c, i) => { if (tr.cells[i].textContent !== c) tr.cells[i].textContent = c; });
  tr.dataset.id = n.id;
  tr.dataset.image = n.image;
  tr.dataset.lifecycle = n.lifecycle;
  tr.dataset.state = n.state || "";
  tr.className = (n.draining ? "draining " : "") + (n.health && n.health.toLowerCase() !== "healthy" ? "unhealthy" : "");
}

const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function renderNodes() {
  const tb = $("nodes").tBodies[0];
  timed("nodes", state.nodes.size, () => {
    for (const id of state.changedRows) {
      const n = state.nodes.get(id);
      let tr = state.rows.get(id);
      if (!n) {
        if (tr) tr.remove();
        state.rows.delete(id);
        continue;
      }
      if (!tr) {
        tr = el("tr");
        state.rows.set(id, tr);
        state.orderDirty = true;
      }
      fillRow(tr, n);
    }
    state.changedRows.clear();
    if (state.orderDirty) {
      const frag = document.createDocumentFragment();
      for (const n of [...state.nodes.values()].sort(byName)) frag.append(state.rows.get(n.id));
      tb.replaceChildren(frag);
      state.orderDirty = false;
    }
    let conns = 0, draining = 0, images = {};
    for (const n of state.nodes.values()) {
      conns += n.connections;
      if (n.draining) draining++;
      images[n.image] = (images[n.image] || 0) + 1;
    }
    $("count").textContent = `(${state.nodes.size}: ` + Object.entries(images).map(([k, c]) => `${c} on ${k}`).join(", ") +
      `; ${draining} draining; ${conns} connections)`;
  });
}
state.changedRows = new Set();

function applyNodes(d) {
  if (d.full) {
    for (const id of state.nodes.keys()) state.changedRows.add(id);
    state.nodes.clear();
  }
  for (const n of d.set) { state.nodes.set(n.id, n); state.changedRows.add(n.id); }
  for (const id of d.del) { state.nodes.delete(id); state.changedRows.add(id); }
}

// ---- events ----

const SKIP = new Set(["time", "change", "type", "msg"]);

function renderEvents() {
  const type = $("ev-type").value;
  const text = $("ev-text").value.toLowerCase();
  const tb = $("events").tBodies[0];
  timed("events", state.events.length, () => {
    const sel = $("ev-type");
    for (const t of [...state.types].sort()) {
      if (![...sel.options].some((o) => o.value === t)) sel.append(el("option", { value: t, text: t }));
    }
    const rows = [];
    let shown = 0, matched = 0;
    for (let i = state.events.length - 1; i >= 0; i--) {
      if (!type && !text && shown >= 300) { matched = state.events.length; break; } // no filter: the rest all match
      const e = state.events[i];
      if (type && e.type !== type) continue;
      const details = Object.entries(e).filter(([k]) => !SKIP.has(k)).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
      if (text && !(`${e.type} ${e.msg} ${details}`.toLowerCase().includes(text))) continue;
      matched++;
      if (shown++ >= 300) continue;
      rows.push(el("tr", { "data-type": e.type }, el("td", { text: fmtTime(e.time) }), el("td", { text: e.type }), el("td", { text: e.msg }), el("td", { class: "details", text: details })));
    }
    tb.replaceChildren(...rows);
    $("ev-count").textContent = `(${matched} of ${state.events.length}${matched > 300 ? "; the newest 300 shown" : ""})`;
  });
}

// ---- charts ----

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e"];
const charts = {};

function chartWidth(id) {
  return Math.max(280, $(id).clientWidth || 400);
}

function draw(id, names, data, dashes) {
  const key = names.join("\u0000");
  let c = charts[id];
  if (c && c.key !== key) { c.plot.destroy(); c = null; }
  if (!c) {
    const series = [{ label: "time" }, ...names.map((n, i) => ({
      label: n, stroke: COLORS[i % COLORS.length], width: 1.5, dash: dashes ? dashes[i] : (i >= COLORS.length ? [6, 3] : undefined),
      spanGaps: true, points: { show: false },
    }))];
    const plot = new uPlot({ width: chartWidth(id), height: 200, series, scales: { x: { time: true } },
      axes: [{}, { size: 60 }], legend: { live: false } }, data, $(id));
    c = charts[id] = { plot, key };
  } else {
    c.plot.setData(data);
  }
}

function renderCharts() {
  timed("charts", state.points.length, () => {
    const pts = state.points;
    const xs = pts.map((p) => p.t);
    const perInstance = pts.length && pts[pts.length - 1].conns;
    if (perInstance) {
      const names = [...new Set(pts.flatMap((p) => Object.keys(p.conns || {})))].sort();
      draw("c-conns", names, [xs, ...names.map((n) => pts.map((p) => (p.conns && n in p.conns ? p.conns[n] : null)))]);
    } else {
      draw("c-conns", ["least", "mean", "most"], [xs, pts.map((p) => p.min), pts.map((p) => p.mean), pts.map((p) => p.max)], [[4, 4], undefined, [1, 3]]);
    }
    const rx = [], ry = [], dy = [];
    for (const p of pts) {
      if (p.reconnects_per_s === undefined && p.delay_ms === undefined) continue;
      rx.push(p.t); ry.push(p.reconnects_per_s ?? null); dy.push(p.delay_ms ?? null);
    }
    draw("c-rps", ["reconnects/s"], [rx, ry]);
    draw("c-delay", ["delay ms"], [rx, dy]);
    const none = rx.length ? "" : "Not measured yet: a plan's probe check gives one point a phase as it ends; the demo's chat clients measure it live.";
    $("c-rps-note").textContent = none;
    $("c-delay-note").textContent = none;
  });
}

// ---- the stream ----

let frame = 0;
function schedule(what) {
  state.dirty.add(what);
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    const d = state.dirty;
    state.dirty = new Set();
    if (d.has("view")) timed("view", 0, renderView);
    if (d.has("nodes")) renderNodes();
    if (d.has("events")) renderEvents();
    if (d.has("points")) renderCharts();
    window.__dash.updates++;
    window.__dash.ready = true;
  });
}

function connect() {
  const es = new EventSource("api/stream");
  es.addEventListener("open", () => { $("conn").textContent = "live"; });
  es.addEventListener("error", () => { $("conn").textContent = "⚠ disconnected; reconnecting…"; });
  es.addEventListener("view", (m) => { state.view = JSON.parse(m.data); schedule("view"); });
  es.addEventListener("nodes", (m) => { applyNodes(JSON.parse(m.data)); schedule("nodes"); });
  es.addEventListener("events", (m) => {
    const evs = JSON.parse(m.data);
    if (!state.gotEvents) { state.events = []; state.gotEvents = true; } // a snapshot after a reconnect repeats them
    for (const e of evs) { state.events.push(e); state.types.add(e.type); }
    if (state.events.length > 5000) state.events.splice(0, state.events.length - 5000);
    schedule("events");
  });
  es.addEventListener("points", (m) => {
    const pts = JSON.parse(m.data);
    if (state.snapshotPoints) { state.points = pts; state.snapshotPoints = false; } else state.points.push(...pts);
    if (state.points.length > 7200) state.points.splice(0, state.points.length - 7200);
    schedule("points");
  });
  // Each (re)connection begins with a snapshot: its events and points
  // replace what the page holds.
  es.addEventListener("open", () => { state.gotEvents = false; state.snapshotPoints = true; });
}

// ---- commands ----

const ASK = {
  pause: "Pause the rollout? The engine keeps its lock and waits until it is resumed.",
  resume: "Resume the rollout?",
  abort: "Abort the rollout? It stops where it is, without rolling back, and frees the group.",
  rollback: "Roll the rollout back now? The previous launch template comes back and every new-image instance is replaced.",
};

function confirmAction(action) {
  const d = $("confirm");
  $("confirm-title").textContent = `${action[0].toUpperCase()}${action.slice(1)} ${state.view ? state.view.change : ""}?`;
  $("confirm-text").textContent = ASK[action];
  $("confirm-ok").textContent = `Yes, ${action}`;
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
    $("confirm-cancel").focus();
  });
}

async function act(action) {
  const out = $("result");
  const token = $("token").value.trim();
  if (!token) { out.textContent = "✗ type the admin token first"; $("token").focus(); return; }
  if (!(await confirmAction(action))) { out.textContent = `${action}: cancelled`; return; }
  out.textContent = `${action}: sending…`;
  try {
    const r = await fetch("api/control", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ action }),
    });
    const body = (await r.text()).trim();
    out.textContent = r.ok ? `✓ ${action}: asked the engine; it acts at its next poll` :
      r.status === 401 ? `✗ ${action} refused: wrong admin token (401)` : `✗ ${action} refused (${r.status}): ${body}`;
    out.dataset.outcome = r.ok ? "ok" : String(r.status);
  } catch (e) {
    out.textContent = `✗ ${action}: ${e}`;
    out.dataset.outcome = "error";
  }
}

for (const b of document.querySelectorAll("[data-action]")) b.addEventListener("click", () => act(b.dataset.action));
$("ev-type").addEventListener("change", renderEvents);
$("ev-text").addEventListener("input", renderEvents);
window.addEventListener("resize", () => { for (const c of Object.values(charts)) c.plot.destroy(); for (const k in charts) delete charts[k]; renderCharts(); });
connect();
