// The dashboard's one page: HTML, CSS and a plain module script, no build step and nothing from a
// network. It is a string (not a file read at run time) so it loads the same from a checkout, npm
// and JSR on every runtime. The script avoids template literals: it lives inside one. It is ASCII
// only, so every runtime serves the same bytes: Bun's transpiler writes a non-ASCII character of a
// template literal as a \u escape, which String.raw keeps (a "\u2026" shown as such). The HTML's
// text says such characters with entities (&hellip;), the script's strings with \u escapes.

/** The page served at `/`: a shell that fetches data only once it has the token it needs. */
export const DASHBOARD_PAGE: string = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>thinkagain dashboard</title>
<style>
  :root {
    --bg: #f5f6f8; --panel: #fff; --ink: #1d2330; --muted: #667085; --line: #e3e6ec;
    --accent: #2f6fde; --ok: #1f9d55; --bad: #d64545; --warn: #d98c10; --crit: #e8590c;
    font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
    color: var(--ink); background: var(--bg);
  }
  * { box-sizing: border-box; }
  body { margin: 0; }
  header { display: flex; align-items: center; gap: 16px; flex-wrap: wrap; padding: 10px 20px;
    background: #1d2330; color: #fff; }
  header h1 { font-size: 17px; margin: 0; font-weight: 600; }
  header .meta { color: #c4cad6; font-size: 13px; }
  header .spacer { flex: 1; }
  .badge { display: inline-block; padding: 2px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
    background: #3a4254; color: #fff; }
  .badge.live { background: var(--ok); }
  .badge.down { background: var(--bad); }
  .badge.wait { background: var(--warn); }
  main { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 14px; padding: 14px 20px 24px; }
  section { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px;
    min-width: 0; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 0 0 8px;
    display: flex; align-items: baseline; gap: 10px; }
  h2 .note { text-transform: none; letter-spacing: 0; font-weight: 400; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 5px 7px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { font-size: 12px; color: var(--muted); font-weight: 600; }
  td.num, th.num { text-align: right; }
  td.name { font-weight: 600; max-width: 260px; overflow: hidden; text-overflow: ellipsis; }
  td.sub { color: var(--muted); }
  td[data-field=endpoint] { max-width: 170px; overflow: hidden; text-overflow: ellipsis; }
  .scroll { overflow-x: auto; }
  tr.empty td { color: var(--muted); font-style: italic; }
  .bar { display: inline-block; width: 40px; height: 7px; background: #e9edf3; border-radius: 4px; vertical-align: middle;
    margin-left: 6px; overflow: hidden; }
  .bar i { display: block; height: 100%; background: var(--accent); }
  .bad { color: var(--bad); font-weight: 600; }
  .chart { display: flex; gap: 10px; align-items: stretch; margin-bottom: 10px; }
  .chart svg { flex: 1; height: 80px; background: #fafbfc; border: 1px solid var(--line); border-radius: 6px; }
  .chart .axis { display: flex; flex-direction: column; justify-content: space-between; font-size: 12px;
    color: var(--muted); min-width: 64px; text-align: right; }
  .muted { color: var(--muted); }
  a, button.link { color: var(--accent); }
  button { font: inherit; cursor: pointer; border: 1px solid var(--line); background: #fff; border-radius: 6px;
    padding: 4px 10px; }
  button.link { border: 0; background: none; padding: 0; text-decoration: underline; }
  #dag-wrap { overflow: auto; max-height: 520px; border: 1px solid var(--line); border-radius: 6px; background: #fafbfc; }
  #dag svg text { font-size: 12px; pointer-events: none; }
  #dag g.task { cursor: pointer; }
  #dag g.task rect { fill: #fff; stroke: #9aa5b8; stroke-width: 1.2; }
  #dag g.task.failed rect { fill: #fdeaea; stroke: var(--bad); }
  #dag g.task.cancelled rect { fill: #f1f2f4; stroke-dasharray: 4 3; }
  #dag g.task.critical rect { stroke: var(--crit); stroke-width: 3; }
  #dag g.task.selected rect { fill: #e8f0fe; }
  #dag path.dep { fill: none; stroke: #8d99ae; stroke-width: 1.3; }
  #dag path.call { fill: none; stroke: #c3cad6; stroke-width: 1.1; stroke-dasharray: 5 4; }
  #dag path.critical { stroke: var(--crit); stroke-width: 2.6; stroke-dasharray: none; }
  .dag-head { display: flex; gap: 14px; align-items: center; flex-wrap: wrap; margin-bottom: 8px; }
  .legend span { margin-right: 12px; font-size: 12px; color: var(--muted); }
  .legend i { display: inline-block; width: 18px; height: 0; border-top: 2px solid #8d99ae; vertical-align: middle;
    margin-right: 4px; }
  .legend i.call { border-top: 2px dashed #c3cad6; }
  .legend i.crit { border-top: 3px solid var(--crit); }
  #details { margin-top: 8px; font-size: 13px; min-height: 20px; }
  #details b { margin-right: 4px; }
  #details span { margin-right: 14px; }
  #token-form { grid-column: 1 / -1; max-width: 460px; margin: 40px auto; }
  #token-form input { font: inherit; padding: 6px 8px; width: 100%; margin: 8px 0; border: 1px solid var(--line);
    border-radius: 6px; }
  .hidden { display: none !important; }
  pre.why { margin: 0; font-size: 12px; white-space: pre-wrap; }
  @media (max-width: 1100px) { main { grid-template-columns: minmax(0, 1fr); } }
</style>
</head>
<body>
<header>
  <h1>thinkagain</h1>
  <span class="meta">mesh <b id="mesh-name">&hellip;</b></span>
  <span id="status" class="badge wait">connecting</span>
  <span class="meta" id="tracing"></span>
  <span class="spacer"></span>
  <span class="meta" id="listening"></span>
</header>
<main>
  <form id="token-form" class="hidden">
    <section>
      <h2>Token needed</h2>
      <div>This mesh is protected by a token. Enter it to see the dashboard (kept for this tab only).</div>
      <input id="token-input" type="password" autocomplete="off" placeholder="token">
      <div id="token-error" class="bad"></div>
      <button type="submit">Show the dashboard</button>
    </section>
  </form>
  <section id="nodes-panel" class="data">
    <h2>Nodes</h2>
    <div class="scroll"><table id="nodes"><thead><tr><th>name</th><th>endpoint</th><th class="num">GPUs free/total</th>
      <th class="num">CPUs free/total</th><th class="num">instances</th><th>state</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section id="instances-panel" class="data">
    <h2>Instances</h2>
    <div class="scroll"><table id="instances"><thead><tr><th>service</th><th class="num">replica</th><th>node</th>
      <th>GPU ids</th><th class="num">calls</th><th class="num">outstanding</th><th>state</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section id="throughput-panel" class="data wide">
    <h2>Throughput <span class="note muted" id="window-note"></span></h2>
    <div class="chart"><div class="axis"><span id="chart-max">0/s</span><span id="chart-now"></span><span>0</span></div>
      <svg id="chart" viewBox="0 0 600 80" preserveAspectRatio="none"></svg></div>
  </section>
  <section id="stuck-panel" class="data wide hidden">
    <h2>Stuck tasks <span class="note muted" id="stuck-note"></span></h2>
    <div class="scroll"><table id="stuck"><thead><tr><th>task</th><th>waiting for</th><th>node</th>
      <th class="num">for</th><th>why</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section id="ops-panel" class="data wide">
    <h2>Ops and methods <span class="note muted" id="sampled-note"></span></h2>
    <div class="scroll"><table id="ops"><thead><tr><th>name</th><th class="num">calls</th><th class="num">done</th>
      <th class="num">failed</th><th class="num">in flight</th><th class="num">p50</th><th class="num">p95</th>
      <th class="num">per s</th><th>last minute</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section id="dag-panel" class="data wide">
    <div class="dag-head">
      <h2 style="margin:0">Last profile</h2>
      <span id="profile-info" class="muted">no profile yet: run your pipeline inside <code>using p = ta.profile()</code></span>
      <a id="trace-link" class="hidden" href="trace.json" download="thinkagain-trace.json">trace.json</a>
      <button id="perfetto" class="link hidden" type="button">open in Perfetto</button>
      <span class="legend"><span><i></i>input</span><span><i class="call"></i>called by</span>
        <span><i class="crit"></i>critical path</span></span>
    </div>
    <div id="dag-wrap"><div id="dag"></div></div>
    <div id="details" class="muted">Click a task for its timing.</div>
  </section>
</main>
<script type="module">
const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "thinkagain-dashboard-token";
let token = sessionStorage.getItem(TOKEN_KEY) || "";
let source = null;
let lastDag = { serial: 0, tasks: -1, at: 0 };

const $ = (sel) => document.querySelector(sel);
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}
function authHeaders() { return token ? { Authorization: "Bearer " + token } : {}; }
function tokenQuery() { return token ? "?token=" + encodeURIComponent(token) : ""; }
function setStatus(text, kind) {
  const s = $("#status");
  s.textContent = text;
  s.className = "badge " + kind;
}
function ms(x) {
  if (!(x > 0)) return "\u2013";
  if (x < 1) return (x * 1000).toFixed(0) + " \u00b5s";
  if (x < 100) return x.toFixed(x < 10 ? 2 : 1) + " ms";
  if (x < 10000) return x.toFixed(0) + " ms";
  return (x / 1000).toFixed(1) + " s";
}
function count(n) { return n === null || n === undefined ? "\u221e" : num(n); }
function num(n) { return Math.round(n).toLocaleString("en-US"); }
function rate(x) { return x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x > 0 ? x.toFixed(2) : "0"; }

function showData(on) {
  for (const s of document.querySelectorAll(".data")) s.classList.toggle("hidden", !on);
  $("#token-form").classList.toggle("hidden", on);
}

async function start() {
  if (source) { source.close(); source = null; }
  setStatus("connecting", "wait");
  let res;
  try {
    res = await fetch("api/snapshot", { headers: authHeaders() });
  } catch {
    setStatus("offline", "down");
    setTimeout(start, 3000);
    return;
  }
  if (res.status === 401) {
    showData(false);
    setStatus("token needed", "wait");
    $("#token-error").textContent = token ? "That token was refused." : "";
    $("#token-input").focus();
    return;
  }
  if (!res.ok) {
    setStatus("error " + res.status, "down");
    setTimeout(start, 3000);
    return;
  }
  showData(true);
  render(await res.json());
  source = new EventSource("events" + tokenQuery());
  source.addEventListener("snapshot", (ev) => {
    setStatus("live", "live");
    render(JSON.parse(ev.data));
  });
  source.onerror = () => {
    setStatus("reconnecting", "down");
    // a refused or ended stream is not retried by the browser: start over (it asks for a token if needed)
    if (source && source.readyState === EventSource.CLOSED) setTimeout(start, 2000);
  };
}

$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("#token-input").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});

/** Keeps one row per key, updating only the cells whose text changed. */
function syncRows(tbody, items, keyOf, cells, empty) {
  const rows = new Map();
  for (const tr of tbody.querySelectorAll("tr[data-key]")) rows.set(tr.dataset.key, tr);
  const placeholder = tbody.querySelector("tr.empty");
  if (items.length === 0) {
    for (const tr of rows.values()) tr.remove();
    if (!placeholder) tbody.append(el("tr", { class: "empty" }, el("td", { colspan: String(cells.length) }, empty)));
    return;
  }
  if (placeholder) placeholder.remove();
  const keep = new Set();
  items.forEach((item, i) => {
    const key = keyOf(item);
    keep.add(key);
    let tr = rows.get(key);
    if (!tr) {
      tr = el("tr", { "data-key": key });
      for (const c of cells) tr.append(el("td", { class: c.cls || "", "data-field": c.field }));
    }
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    cells.forEach((c, j) => {
      const td = tr.children[j];
      const v = c.value(item);
      if (typeof v === "string") {
        if (td.textContent !== v) td.textContent = v;
      } else if (td.dataset.sig !== v.sig) {
        td.dataset.sig = v.sig;
        td.replaceChildren(v.node);
      }
    });
  });
  for (const [key, tr] of rows) if (!keep.has(key)) tr.remove();
}

function freeOf(r) {
  const text = count(r.free) + " / " + count(r.total);
  if (r.total === null || r.total === 0) return text;
  const used = (r.total - r.free) / r.total;
  const bar = el("span", { class: "bar", title: Math.round(used * 100) + "% used" }, el("i", { style: "width:" + (used * 100).toFixed(0) + "%" }));
  return { sig: text, node: el("span", {}, text, bar) };
}

function sparkline(series) {
  const max = Math.max(1, ...series);
  const w = 160, h = 22;
  const pts = series.map((v, i) => (i * w / Math.max(1, series.length - 1)).toFixed(1) + "," + (h - 1 - v / max * (h - 2)).toFixed(1));
  const s = svg("svg", { width: w, height: h, viewBox: "0 0 " + w + " " + h });
  s.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: "#2f6fde", "stroke-width": 1.5 }));
  return { sig: series.join(","), node: s };
}

function renderChart(series, windowSeconds) {
  const chart = $("#chart");
  const max = Math.max(1, ...series);
  const w = 600, h = 80;
  const step = w / Math.max(1, series.length - 1);
  const pts = series.map((v, i) => (i * step).toFixed(1) + "," + (h - 2 - v / max * (h - 6)).toFixed(1));
  chart.replaceChildren(
    svg("polygon", { points: "0," + h + " " + pts.join(" ") + " " + w + "," + h, fill: "rgba(47,111,222,.15)" }),
    svg("polyline", { points: pts.join(" "), fill: "none", stroke: "#2f6fde", "stroke-width": 2, "vector-effect": "non-scaling-stroke" }),
  );
  $("#chart-max").textContent = num(max) + "/s";
  $("#chart-now").textContent = "now " + num(series.length ? series[series.length - 1] : 0) + "/s";
  $("#window-note").textContent = "calls settled per second, last " + windowSeconds + " s";
}

function render(s) {
  $("#mesh-name").textContent = s.mesh + (s.closed ? " (closed)" : "");
  const t = s.tracing;
  const tr = $("#tracing");
  tr.replaceChildren();
  if (t.enabled) {
    tr.append("tracing on");
    if (t.traceId) tr.append(" \u00b7 trace id ", el("code", { id: "trace-id", title: "look it up in Jaeger or Tempo" }, t.traceId));
  } else tr.append("tracing off");
  $("#listening").textContent = s.listeningMs > 0 ? "watching for " + Math.round(s.listeningMs / 1000) + " s" : "";
  const share = s.recording.share;
  $("#sampled-note").textContent = share < 1
    ? "\u2248 estimates: " + (share * 100).toFixed(share < 0.1 ? 1 : 0) + "% of calls recorded in the last minute" +
      (t.enabled ? " (tracing samples)" : " (to keep the dashboard's cost under " + Math.round(s.recording.maxOverhead * 100) + "%)")
    : "since this page opened";

  const perNode = new Map();
  for (const i of s.instances) perNode.set(i.node, (perNode.get(i.node) || 0) + 1);
  syncRows($("#nodes tbody"), s.nodes, (n) => n.name, [
    { field: "name", cls: "name", value: (n) => n.name },
    { field: "endpoint", cls: "sub", value: (n) => n.endpoint || "in this process" },
    { field: "gpus", cls: "num", value: (n) => freeOf(n.gpus) },
    { field: "cpus", cls: "num", value: (n) => freeOf(n.cpus) },
    { field: "instances", cls: "num", value: (n) => String(perNode.get(n.name) || 0) },
    { field: "state", value: (n) => (n.lost ? "lost" : "up") },
  ], "no nodes");

  // by id: service and replica alone are not unique (each init() of a service has a replica 0)
  syncRows($("#instances tbody"), s.instances, (i) => i.id, [
    { field: "service", cls: "name", value: (i) => i.service },
    { field: "replica", cls: "num", value: (i) => String(i.replica) },
    { field: "node", value: (i) => i.node },
    { field: "gpus", cls: "sub", value: (i) => i.gpus.length ? i.gpus.join(", ") : "\u2013" },
    { field: "calls", cls: "num", value: (i) => num(i.calls) },
    { field: "outstanding", cls: "num", value: (i) => num(i.outstanding) },
    { field: "state", value: (i) => i.state },
  ], "no service instances");

  syncRows($("#ops tbody"), s.ops, (o) => o.name, [
    { field: "name", cls: "name", value: (o) => o.name },
    { field: "calls", cls: "num", value: (o) => (o.estimated ? "\u2248" : "") + num(o.calls) },
    { field: "completed", cls: "num", value: (o) => (o.estimated ? "\u2248" : "") + num(o.completed) },
    { field: "failed", cls: "num", value: (o) => num(o.failed) + (o.cancelled ? " (+" + num(o.cancelled) + " cancelled)" : "") },
    { field: "inflight", cls: "num", value: (o) => num(o.inFlight) + (o.inFlight ? " (" + num(o.running) + " running)" : "") },
    { field: "p50", cls: "num", value: (o) => ms(o.window.p50) },
    { field: "p95", cls: "num", value: (o) => ms(o.window.p95) },
    { field: "rate", cls: "num", value: (o) => rate(o.window.perSecond) },
    { field: "series", value: (o) => sparkline(o.series) },
  ], "no calls since this page opened");
  for (const td of document.querySelectorAll("#ops td[data-field=failed]")) td.classList.toggle("bad", !td.textContent.startsWith("0"));
  $("#sampled-note").classList.toggle("bad", share < 1);

  const stuck = s.stuck;
  $("#stuck-panel").classList.toggle("hidden", stuck.reported === 0);
  $("#stuck-note").textContent = stuck.tasks.length + " not settled yet, " + num(stuck.reported) +
    " reported by the watchdog since this page opened";
  syncRows($("#stuck tbody"), stuck.tasks, (t) => t.id, [
    { field: "id", cls: "name bad", value: (t) => t.id },
    { field: "waiting", value: (t) => t.waitingFor },
    { field: "node", value: (t) => t.node || "\u2013" },
    { field: "for", cls: "num", value: (t) => ms(t.forMs + t.reportedAgoMs) },
    { field: "why", value: (t) => ({ sig: t.explanation, node: el("pre", { class: "why" }, t.explanation) }) },
  ], "none stuck now");

  renderChart(s.series.length ? s.series : new Array(s.windowSeconds).fill(0), s.windowSeconds);
  renderProfile(s.profile);
}

function renderProfile(p) {
  const has = p !== null;
  $("#trace-link").classList.toggle("hidden", !has);
  $("#perfetto").classList.toggle("hidden", !has);
  if (!has) return;
  $("#trace-link").href = "trace.json" + tokenQuery();
  $("#profile-info").textContent = "profile #" + p.serial + ": " + p.tasks + " tasks, " + (p.active ? "recording" : "stopped");
  const now = Date.now();
  const changed = p.serial !== lastDag.serial || p.tasks !== lastDag.tasks;
  // while it records, redraw at most every 3 s
  if (changed && (p.serial !== lastDag.serial || !p.active || now - lastDag.at > 3000)) {
    lastDag = { serial: p.serial, tasks: p.tasks, at: now };
    fetch("api/dag", { headers: authHeaders() }).then((r) => (r.ok ? r.json() : null)).then((d) => d && drawDag(d));
  }
}

const BOX_W = 196, BOX_H = 38, GAP_X = 56, GAP_Y = 14, PAD = 14;
function drawDag(d) {
  const byId = new Map(d.tasks.map((t) => [t.id, t]));
  const pos = (t) => ({ x: PAD + t.layer * (BOX_W + GAP_X), y: PAD + t.row * (BOX_H + GAP_Y) });
  let rows = 0;
  for (const t of d.tasks) rows = Math.max(rows, t.row + 1);
  const width = PAD * 2 + d.layers * (BOX_W + GAP_X) - GAP_X;
  const height = PAD * 2 + rows * (BOX_H + GAP_Y) - GAP_Y;
  const s = svg("svg", { width: Math.max(width, 10), height: Math.max(height, 10) });
  const defs = svg("defs");
  for (const [id, color] of [["arrow", "#8d99ae"], ["arrow-crit", "#e8590c"]]) {
    const m = svg("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    m.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: color }));
    defs.append(m);
  }
  s.append(defs);
  const order = new Map(d.critical.map((id, i) => [id, i]));
  const critEdge = (a, b) => order.has(a) && order.has(b) && Math.abs(order.get(a) - order.get(b)) === 1;
  const edge = (from, to, cls) => {
    const a = pos(from), b = pos(to);
    const x1 = a.x + BOX_W, y1 = a.y + BOX_H / 2, x2 = b.x, y2 = b.y + BOX_H / 2;
    const mx = (x1 + x2) / 2;
    const crit = critEdge(from.id, to.id);
    s.append(svg("path", {
      d: "M" + x1 + "," + y1 + " C" + mx + "," + y1 + " " + mx + "," + y2 + " " + x2 + "," + y2,
      class: cls + (crit ? " critical" : ""),
      "marker-end": "url(#" + (crit ? "arrow-crit" : "arrow") + ")",
    }));
  };
  for (const t of d.tasks) {
    for (const dep of t.deps) if (byId.has(dep)) edge(byId.get(dep), t, "dep");
    if (t.parent && byId.has(t.parent)) edge(byId.get(t.parent), t, "call");
  }
  for (const t of d.tasks) {
    const p = pos(t);
    const g = svg("g", { class: "task " + t.status + (t.critical ? " critical" : ""), "data-id": t.id, transform: "translate(" + p.x + "," + p.y + ")" });
    const title = svg("title");
    title.textContent = t.name + " (" + t.id + ")";
    g.append(title, svg("rect", { width: BOX_W, height: BOX_H, rx: 6 }));
    const name = svg("text", { x: 8, y: 15, "font-weight": 600 });
    name.textContent = t.name.length > 25 ? t.name.slice(0, 24) + "\u2026" : t.name;
    const sub = svg("text", { x: 8, y: 30, fill: "#667085" });
    sub.textContent = (t.status === "completed" ? ms(t.runMs) : t.status) +
      (t.node ? (t.executor === "remote" ? " \u2192 " : " \u00b7 ") + t.node : "");
    g.append(name, sub);
    g.addEventListener("click", () => select(t, g));
    s.append(g);
  }
  $("#dag").replaceChildren(s);
  if (d.omitted > 0) $("#profile-info").textContent += " (" + d.omitted + " not drawn: the critical path and the first " + d.tasks.length + " are)";
}

function select(t, g) {
  for (const x of document.querySelectorAll("#dag g.selected")) x.classList.remove("selected");
  g.classList.add("selected");
  const item = (k, v) => el("span", {}, el("b", {}, k), v);
  $("#details").className = "";
  $("#details").replaceChildren(
    item(t.name, "(" + t.id + ", " + t.kind + ")"),
    item("status", t.status),
    item("node", (t.node || "this process") + (t.executor === "remote" ? " (sent there)" : "")),
    item("submitted at", ms(t.submittedMs)),
    item("waited", ms(t.waitMs)),
    item("ran", ms(t.runMs)),
    item("attempts", String(t.attempts)),
    item("inputs", t.deps.length ? t.deps.join(", ") : "none"),
    item("critical path", t.critical ? "yes" : "no"),
  );
}

$("#perfetto").addEventListener("click", async () => {
  const res = await fetch("trace.json", { headers: authHeaders() });
  if (!res.ok) return;
  const buffer = await res.arrayBuffer();
  const origin = "https://ui.perfetto.dev";
  const win = window.open(origin + "/#!/viewer");
  if (!win) return;
  // Perfetto answers PONG once it is ready for the trace (its documented postMessage protocol)
  const ping = setInterval(() => win.postMessage("PING", origin), 100);
  const onMessage = (ev) => {
    if (ev.origin !== origin || ev.data !== "PONG") return;
    clearInterval(ping);
    window.removeEventListener("message", onMessage);
    win.postMessage({ perfetto: { buffer, title: "thinkagain profile" } }, origin);
  };
  window.addEventListener("message", onMessage);
  setTimeout(() => clearInterval(ping), 30000);
});

start();
</script>
</body>
</html>
`;
