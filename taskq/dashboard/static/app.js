// taskq dashboard: the live parts of the pages (Alpine.js components fed by server-sent events).
"use strict";

// The prefix a reverse proxy serves the dashboard under ("" without --root-path; see
// taskq/dashboard/paths.py). Every address a script or an Alpine expression asks for goes
// through url(): url("/api/stream"), :href="url('/tasks/' + id)".
const ROOT = document.querySelector('meta[name="taskq-root"]')?.content ?? "";

function url(path) {
  return ROOT + path;
}

function initial() {
  const node = document.getElementById("initial");
  return node ? JSON.parse(node.textContent) : null;
}

function clock(seconds, millis) {
  if (seconds === null || seconds === undefined) return "";
  const text = new Date(seconds * 1000).toISOString().replace("T", " ");
  return millis ? text.slice(0, 23) : text.slice(0, 19);
}

function ago(seconds) {
  if (!seconds) return "";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

// Follow a server-sent event stream; the browser reconnects by itself after a drop.
function follow(path, kind, onData) {
  const source = new EventSource(url(path));
  source.addEventListener(kind, (event) => onData(JSON.parse(event.data)));
  return source;
}

const charts = new Map();

function drawRates(queues) {
  for (const q of queues) {
    const cell = document.getElementById("chart-" + q.queue);
    if (!cell || typeof uPlot === "undefined") continue;
    const data = [q.series.time, q.series.in, q.series.out];
    let plot = charts.get(q.queue);
    if (!plot || !cell.contains(plot.root)) {
      cell.textContent = "";
      plot = new uPlot({
        width: 220, height: 44, legend: { show: false }, cursor: { show: false },
        padding: [4, 2, 2, 2], axes: [{ show: false }, { show: false }],
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] } },
        series: [{}, { label: "in", stroke: "#2f6fdd", width: 1.5, points: { show: false } },
                 { label: "out", stroke: "#1b9e5a", width: 1.5, points: { show: false } }],
      }, data, cell);
      charts.set(q.queue, plot);
    } else {
      plot.setData(data);
    }
  }
}

document.addEventListener("alpine:init", () => {
  Alpine.data("overview", () => ({
    data: initial(),
    clock, ago,
    running() {
      return this.data.workers.filter((w) => w.state === "running").length;
    },
    init() {
      this.$nextTick(() => drawRates(this.data.queues));
      follow("/api/stream?view=overview", "overview", (data) => {
        this.data = data;
        this.$nextTick(() => drawRates(data.queues));
      });
    },
  }));

  Alpine.data("taskPage", () => ({
    task: initial(),
    clock,
    init() {
      const id = this.$el.dataset.taskId;
      follow("/api/stream?task=" + encodeURIComponent(id), "task", (task) => { this.task = task; });
    },
    detail(d) {
      const shown = (k, v) => k === "runtime" ? (v * 1000).toFixed(1) + " ms"
        : k === "delay" ? v + " s" : v;
      return Object.entries(d || {}).map(([k, v]) => k + "=" + shown(k, v)).join(" ");
    },
    // One row per attempt of each run: when it started, where, and how it ended. A replay
    // from the dead letters starts a new run (its attempts count from 1 again).
    attempts() {
      const rows = new Map();
      let run = 1;
      let ended = false;
      for (const e of (this.task ? this.task.timeline : [])) {
        if (e.type === "task.replayed" || (ended && e.type === "task.received")) {
          if (rows.size) run += 1;
          ended = false;
          if (e.type === "task.replayed") continue;
        }
        if (["task.succeeded", "task.dead-lettered", "task.cancelled"].includes(e.type)) ended = true;
        const key = run + "-" + (e.attempt ?? 0);
        const row = rows.get(key) || { run, attempt: e.attempt ?? 0, started: null, worker: "", outcome: "waiting" };
        if (e.type === "task.started") { row.started = e.time; row.worker = e.worker; row.outcome = "running"; }
        if (["task.succeeded", "task.failed", "task.retried", "task.dead-lettered", "task.cancelled"].includes(e.type)) {
          row.outcome = e.type.replace("task.", "") + (e.detail && e.detail.error ? " (" + e.detail.error + ")" : "");
        }
        rows.set(key, row);
      }
      return [...rows.values()];
    },
  }));
});
