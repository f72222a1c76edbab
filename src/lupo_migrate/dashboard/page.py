"""The dashboard's page: one self-contained HTML document (inline CSS and script, nothing
loaded from elsewhere), served by :mod:`lupo_migrate.dashboard`.

The script reads ``/api/state`` every half second and draws it; countdowns tick every second
from their deadlines (corrected by the server's clock). Text from the database is only ever
set as text (``textContent``), never parsed as HTML. Element ids are stable, for tests and
for anyone scripting the page: ``#phase``, ``#outcome``, ``#step``, ``#eta``, ``#timeline``,
``#lock``, ``#freeze``, ``#queue``, ``#copies``, ``#decisions`` (one ``.countdown`` per open
window, with ``data-class``), ``#checklist``, ``#chart-durations``, ``#chart-rollbacks``,
``#chart-failures``, ``#errors``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PAGE"]

PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lupo-migrate dashboard</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 10px 18px; display: flex; gap: 18px;
           align-items: baseline; }
  header h1 { font-size: 17px; margin: 0; }
  header small { color: #b8c0d0; }
  main { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px;
         padding: 14px; }
  section { background: #fff; border-radius: 6px; padding: 12px 14px;
            box-shadow: 0 1px 2px rgba(0,0,0,.12); }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 14px; margin: 0 0 8px; text-transform: uppercase; letter-spacing: .04em;
       color: #5a6275; }
  .banner { margin: 14px 14px 0; padding: 8px 12px; border-radius: 6px; }
  .banner:empty { display: none; }
  #errors { background: #fde2e1; color: #8a1c16; }
  #dead { background: #fff1cc; color: #6b4b00; }
  #phase { font-size: 24px; font-weight: 600; }
  .phase-idle { color: #2c6e2f; } .phase-rolling_back { color: #a1261d; }
  .phase-migrating { color: #1d5fa1; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 12px; margin: 0; }
  dt { color: #5a6275; } dd { margin: 0; }
  progress { width: 100%; height: 12px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #e4e6eb; }
  th { color: #5a6275; font-weight: 500; }
  td.nowrap { white-space: nowrap; }
  h2 .muted { text-transform: none; letter-spacing: 0; }
  ol#timeline { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 6px; }
  ol#timeline li { background: #e8eef8; border-radius: 4px; padding: 3px 8px; }
  ol#timeline li span { color: #5a6275; font-size: 12px; margin-left: 6px; }
  .countdown { font-variant-numeric: tabular-nums; font-weight: 600; }
  .mark { font-family: ui-monospace, monospace; margin-right: 6px; }
  .state-failed { color: #a1261d; } .state-done { color: #2c6e2f; }
  .state-manual { color: #6b4b00; } .state-pending, .state-skipped { color: #5a6275; }
  .evidence { color: #5a6275; font-size: 12px; margin-left: 22px; }
  .checklist { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
  .checklist ul { list-style: none; padding: 0; margin: 0; }
  .checklist h3 { font-size: 13px; margin: 0 0 4px; }
  .charts { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
  .charts h3 { font-size: 13px; margin: 0 0 4px; }
  svg { width: 100%; height: 150px; background: #fafbfc; border: 1px solid #e4e6eb; }
  svg rect { fill: #5b8fd1; } svg rect.completed { fill: #4f9a52; }
  svg rect.rolled_back { fill: #d8a03a; } svg rect.failed { fill: #c2463c; }
  svg text { font-size: 10px; fill: #1d2330; }
  .muted { color: #5a6275; }
</style>
</head>
<body>
<header>
  <h1>lupo-migrate dashboard</h1>
  <span>target <b id="target">?</b></span>
  <small id="updated">connecting...</small>
</header>
<div id="errors" class="banner" role="alert"></div>
<div id="dead" class="banner" role="alert"></div>
<main>
  <section>
    <h2>Current run</h2>
    <div id="phase" data-phase="">no run yet</div>
    <dl>
      <dt>run</dt><dd id="run-id">-</dd>
      <dt>outcome</dt><dd id="outcome">-</dd>
      <dt>step</dt><dd id="step">-</dd>
      <dt>progress</dt><dd><progress id="progress" max="1" value="0"></progress></dd>
      <dt>elapsed</dt><dd id="elapsed">-</dd>
      <dt>ETA</dt><dd id="eta">-</dd>
      <dt>failure</dt><dd id="failure">-</dd>
    </dl>
  </section>
  <section>
    <h2>Lock and freeze</h2>
    <dl>
      <dt>run lock</dt><dd id="lock">free</dd>
      <dt>write freeze</dt><dd id="freeze">none</dd>
    </dl>
  </section>
  <section class="wide">
    <h2>Phase timeline</h2>
    <ol id="timeline"></ol>
  </section>
  <section>
    <h2>Pending decisions</h2>
    <table>
      <thead><tr><th>run</th><th>class</th><th>status</th><th>steps</th><th>deadline</th>
        <th>time left</th></tr></thead>
      <tbody id="decisions"></tbody>
    </table>
    <p id="decisions-empty" class="muted">no open decision</p>
  </section>
  <section>
    <h2>Queue</h2>
    <table>
      <thead><tr><th>#</th><th>status</th><th>priority</th><th>queued</th><th>by</th>
        <th>steps</th></tr></thead>
      <tbody id="queue"></tbody>
    </table>
    <p id="queue-empty" class="muted">the queue is empty</p>
  </section>
  <section>
    <h2>Online copies</h2>
    <table>
      <thead><tr><th>table</th><th>run</th><th>phase</th><th>rows copied</th>
        <th>held</th></tr></thead>
      <tbody id="copies"></tbody>
    </table>
    <p id="copies-empty" class="muted">no online copy under way</p>
  </section>
  <section class="wide">
    <h2>Execution checklist <span id="checklist-run" class="muted"></span></h2>
    <div id="checklist" class="checklist"></div>
  </section>
  <section class="wide">
    <h2>History</h2>
    <div class="charts">
      <div><h3>Durations (seconds per run)</h3><svg id="chart-durations" role="img"></svg>
        <p id="durations-note" class="muted"></p></div>
      <div><h3>Outcomes and rollbacks</h3><svg id="chart-rollbacks" role="img"></svg>
        <p id="rollbacks-note" class="muted"></p></div>
      <div><h3>Failures by type</h3><svg id="chart-failures" role="img"></svg>
        <p id="failures-note" class="muted"></p></div>
    </div>
  </section>
</main>
<script>
"use strict";
const POLL_MS = 500;
const SVG = "http://www.w3.org/2000/svg";
let skew = 0;  // the server's clock minus this browser's, in seconds
const seen = {};  // the JSON of each section last drawn

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function changed(name, value) {
  const text = JSON.stringify(value);
  if (seen[name] === text) return false;
  seen[name] = text;
  return true;
}

function pad(n) { return String(n).padStart(2, "0"); }

function when(epoch) {
  if (epoch === null || epoch === undefined) return "-";
  const d = new Date(epoch * 1000);
  return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
    " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) +
    " UTC";
}

function span(seconds) {
  let s = Math.max(0, Math.floor(seconds));
  const days = Math.floor(s / 86400); s -= days * 86400;
  const hours = Math.floor(s / 3600); s -= hours * 3600;
  const minutes = Math.floor(s / 60); s -= minutes * 60;
  if (days) return days + "d " + pad(hours) + "h " + pad(minutes) + "m " + pad(s) + "s";
  if (hours) return hours + "h " + pad(minutes) + "m " + pad(s) + "s";
  if (minutes) return minutes + "m " + pad(s) + "s";
  return s + "s";
}

function serverNow() { return Date.now() / 1000 + skew; }

function tick() {
  for (const node of document.querySelectorAll(".countdown")) {
    const left = Number(node.dataset.deadline) - serverNow();
    node.textContent = left > 0 ? span(left) + " left" : "window closed";
  }
}

function drawRun(state) {
  const run = state.run;
  const phase = $("phase");
  if (!run) {
    phase.textContent = "no run yet";
    phase.dataset.phase = "";
    return;
  }
  phase.textContent = run.phase;
  phase.dataset.phase = run.phase;
  phase.className = "phase-" + run.phase;
  $("run-id").textContent = run.id;
  $("outcome").textContent = run.outcome ? run.outcome + (run.blocked ? " (BLOCKED)" : "") :
    "in progress";
  const count = run.steps_done + " of " + run.steps_total + " step(s) applied";
  $("step").textContent = run.in_flight ? run.in_flight + " (" + count + ")" : count;
  $("progress").value = run.steps_total ? run.steps_done / run.steps_total : (run.ended ? 1 : 0);
  $("elapsed").textContent = run.ended ? "-" : span(run.elapsed_seconds);
  $("eta").textContent = run.ended ? "-" : run.eta_seconds === null ? "unknown yet" :
    "about " + span(run.eta_seconds) + " (" + run.eta_basis + ")";
  $("failure").textContent = run.failure || "-";
}

function drawTimeline(marks) {
  if (!changed("timeline", marks)) return;
  const items = marks.map((mark, i) => {
    const li = el("li", mark.phase + (mark.outcome ? " (" + mark.outcome + ")" : ""));
    li.dataset.phase = mark.phase;
    const next = marks[i + 1];
    const lasted = next ? ", " + span(next.at - mark.at) : "";
    li.appendChild(el("span", when(mark.at) + lasted + (mark.observed ? "" : ", recorded")));
    return li;
  });
  $("timeline").replaceChildren(...items);
}

function drawLock(state) {
  const lock = state.lock;
  $("lock").textContent = !lock ? "free" :
    lock.owner + " since " + when(lock.since) + ", heartbeat " +
    span(lock.heartbeat_age_seconds) + " ago" + (lock.hung ? " (HUNG: no heartbeat)" : "");
  const freeze = state.freeze;
  $("freeze").textContent = !freeze ? "none" :
    "by " + freeze.owner + " since " + when(freeze.since) + ", expires " + when(freeze.expires) +
    " (" + span(freeze.seconds_left) + " left)";
}

function drawDecisions(decisions) {
  const stable = decisions.map((d) => Object.assign({}, d, {seconds_left: null}));
  if (!changed("decisions", stable)) return;
  const rows = decisions.map((d) => {
    const tr = el("tr");
    tr.dataset.class = d["class"];
    tr.appendChild(el("td", d.run_id.slice(0, 12)));
    tr.appendChild(el("td", d["class"]));
    tr.appendChild(el("td", d.status));
    tr.appendChild(el("td", d.scope.length));
    tr.appendChild(el("td", when(d.deadline)));
    const cell = el("td", null, "nowrap");
    if (d.deadline !== null) {
      const count = el("span", "", "countdown");
      count.dataset.deadline = d.deadline;
      count.dataset["class"] = d["class"];
      cell.appendChild(count);
    } else {
      cell.textContent = "no deadline";
    }
    tr.appendChild(cell);
    return tr;
  });
  $("decisions").replaceChildren(...rows);
  $("decisions-empty").hidden = rows.length > 0;
  tick();
}

function drawQueue(queue) {
  if (!changed("queue", queue)) return;
  const rows = queue.map((e) => {
    const tr = el("tr");
    for (const value of [e.id, e.status, e.priority, when(e.enqueued_at), e.enqueued_by,
                         e.steps + (e.upto ? " (upto " + e.upto + ")" : "")]) {
      tr.appendChild(el("td", value));
    }
    return tr;
  });
  $("queue").replaceChildren(...rows);
  $("queue-empty").hidden = rows.length > 0;
}

function drawCopies(copies) {
  if (!changed("copies", copies)) return;
  const rows = copies.map((c) => {
    const tr = el("tr");
    const pct = c.estimated ? Math.min(100, Math.floor(100 * c.copied / c.estimated)) : null;
    const share = pct === null ? "" : " (" + pct + " %)";
    const held = [c.paused ? "paused" : "", c.postponed ? "cut-over postponed" : "",
                  c.most_threads ? "at most " + c.most_threads + " threads" : ""]
      .filter((x) => x).join(", ") || "-";
    const rows = c.copied.toLocaleString() + " of about " + c.estimated.toLocaleString();
    for (const value of [c.table, c.run, c.phase, rows + share, held]) {
      tr.appendChild(el("td", value));
    }
    return tr;
  });
  $("copies").replaceChildren(...rows);
  $("copies-empty").hidden = rows.length > 0;
}

function drawChecklist(checklist) {
  if (!changed("checklist", checklist)) return;
  $("checklist-run").textContent = checklist ? "of run " + checklist.run_id.slice(0, 12) : "";
  const stages = [["pre", "Before (pre)"], ["during", "During"], ["post", "After (post)"]];
  const columns = stages.map(([stage, title]) => {
    const column = el("div");
    column.appendChild(el("h3", title));
    const list = el("ul");
    for (const item of (checklist ? checklist.items : []).filter((i) => i.stage === stage)) {
      const li = el("li", null, "state-" + item.state);
      li.dataset.state = item.state;
      li.appendChild(el("span", item.mark, "mark"));
      li.appendChild(document.createTextNode(item.label));
      li.appendChild(el("div", item.evidence, "evidence"));
      list.appendChild(li);
    }
    column.appendChild(list);
    return column;
  });
  $("checklist").replaceChildren(...columns);
}

function bars(svg, data) {
  const width = 360, height = 150, top = 14, bottom = 22, side = 8;
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  const max = Math.max(1e-9, ...data.map((d) => d.value));
  const step = (width - 2 * side) / Math.max(data.length, 1);
  const shapes = [];
  data.forEach((d, i) => {
    const h = (height - top - bottom) * d.value / max;
    const x = side + i * step + step * 0.1;
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", x);
    rect.setAttribute("y", height - bottom - h);
    rect.setAttribute("width", Math.min(step * 0.8, 60));
    rect.setAttribute("height", Math.max(h, 0.5));
    if (d.cls) rect.setAttribute("class", d.cls);
    const title = document.createElementNS(SVG, "title");
    title.textContent = d.label + ": " + d.shown;
    rect.appendChild(title);
    shapes.push(rect);
    if (data.length <= 8) {
      for (const [text, y] of [[d.label, height - 8], [d.shown, height - bottom - h - 3]]) {
        const t = document.createElementNS(SVG, "text");
        t.setAttribute("x", x);
        t.setAttribute("y", y);
        t.textContent = text;
        shapes.push(t);
      }
    }
  });
  svg.replaceChildren(...shapes);
}

function entries(mapping) {
  return Object.entries(mapping || {}).sort((a, b) => b[1] - a[1]);
}

function drawHistory(history) {
  if (!changed("history", history)) return;
  const h = history || {runs: 0, durations: [], by_outcome: {}, failures_by_type: {},
                        failures_by_file_type: {}, rollback_frequency: 0};
  bars($("chart-durations"), h.durations.map((d) => ({
    label: d.run_id.slice(0, 6), value: d.seconds, shown: d.seconds.toFixed(1) + " s"})));
  $("durations-note").textContent = h.durations.length ?
    "median " + (h.median_seconds || 0).toFixed(1) + " s over " + h.durations.length + " run(s)" :
    "no durations recorded";
  bars($("chart-rollbacks"), entries(h.by_outcome).map(([outcome, count]) => ({
    label: outcome, value: count, shown: String(count), cls: outcome})));
  $("rollbacks-note").textContent = h.runs ?
    h.runs + " run(s); rollback frequency " + (100 * h.rollback_frequency).toFixed(0) + "%" +
    (h.operator_rollbacks ? "; " + h.operator_rollbacks + " operator rollback(s)" : "") :
    "no run yet";
  bars($("chart-failures"), entries(h.failures_by_type).map(([kind, count]) => ({
    label: kind, value: count, shown: String(count)})));
  const types = entries(h.failures_by_file_type).map(([t, n]) => t + " " + n).join(", ");
  $("failures-note").textContent = Object.keys(h.failures_by_type).length ?
    "by file type: " + (types || "unknown") : "no failure recorded";
}

function draw(state) {
  $("target").textContent = state.target;
  $("updated").textContent = "read " + when(state.now) + ", every " + state.poll_seconds + " s";
  $("errors").textContent = state.errors.length ?
    "The database could not be read: " + state.errors.join("; ") +
    " (the last values read are shown)" :
    "";
  $("dead").textContent = state.dead || "";
  drawRun(state);
  drawTimeline(state.timeline);
  drawLock(state);
  drawDecisions(state.decisions);
  drawQueue(state.queue);
  drawCopies(state.copies || []);
  drawChecklist(state.checklist);
  drawHistory(state.history);
}

async function poll() {
  try {
    const answer = await fetch("/api/state", {cache: "no-store"});
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    const state = await answer.json();
    skew = state.served - Date.now() / 1000;
    draw(state);
  } catch (error) {
    $("errors").textContent = "The dashboard server does not answer (" + error.message +
      "); trying again.";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

setInterval(tick, 1000);
poll();
</script>
</body>
</html>
"""
