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

// A queue's rate chart: in and out (msg/s) over the charts' span, on a y axis from 0 to a round
// top whose labels are text in the page (readable, and found by the tests: uPlot draws its
// own on the canvas), with the newest values above it.
const charts = new Map();
const RATES = { width: 200, height: 48, pad: 5, ticks: [1, 0.5, 0] }; // ticks: of the top

// The smallest of 1, 2 and 5 times a power of ten at or above max (1 msg/s at least).
function roundTop(max) {
  if (!(max > 1)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map((m) => m * power).find((top) => top >= max);
}

function rateChart(cell) {
  const { width, height, pad, ticks } = RATES;
  cell.innerHTML = '<div class="rates-head"><span class="rates-unit">msg/s</span>' +
    '<span class="legend-in"></span><span class="legend-out"></span></div>' +
    '<div class="rates-body"><div class="rates-axis"></div><div class="rates-plot"></div></div>';
  const axis = cell.querySelector(".rates-axis");
  const labels = ticks.map((f) => {
    const label = axis.appendChild(document.createElement("span"));
    label.style.top = pad + (1 - f) * (height - 2 * pad) + "px";
    return label;
  });
  const chart = { top: 1, labels, now: [cell.querySelector(".legend-in"), cell.querySelector(".legend-out")] };
  chart.plot = new uPlot({
    width, height, legend: { show: false }, cursor: { show: false }, padding: [pad, 2, pad, 0],
    // The y axis draws only its grid lines, at the labels' heights.
    axes: [{ show: false }, { size: 0, ticks: { show: false }, values: (u, splits) => splits.map(() => ""),
      splits: () => ticks.map((f) => f * chart.top), grid: { stroke: "#e3e6ec", width: 1 } }],
    scales: { x: { time: true }, y: { range: () => [0, chart.top] } },
    series: [{}, { label: "in", stroke: "#2f6fdd", width: 1.5, points: { show: false } },
             { label: "out", stroke: "#1b9e5a", width: 1.5, points: { show: false } }],
  }, [[], [], []], cell.querySelector(".rates-plot"));
  return chart;
}

function drawRates(queues) {
  if (typeof uPlot === "undefined") return;
  for (const q of queues) {
    const cell = document.getElementById("chart-" + q.queue);
    if (!cell) continue;
    let chart = charts.get(q.queue);
    if (!chart || !cell.contains(chart.plot.root)) {
      chart = rateChart(cell);
      charts.set(q.queue, chart);
    }
    const s = q.series;
    chart.top = roundTop(Math.max(0, ...s.in, ...s.out));
    chart.labels.forEach((label, i) => { label.textContent = rateText(RATES.ticks[i] * chart.top); });
    chart.now[0].textContent = "in " + rateText(s.in[s.in.length - 1]);
    chart.now[1].textContent = "out " + rateText(s.out[s.out.length - 1]);
    chart.plot.setData([s.time, s.in, s.out]);
  }
}

// Per-task statistics (/stats): two charts a task, each with its axes in their units, and a
// legend with the values under the cursor (the newest point's before any hover).
const statsCharts = new Map();
const STATS_REFRESH = 30000; // ms: the figures are per minute

// A figure with a few significant digits: a no-op task runs for some µs, a rare one 0.015/s.
function figure(v, digits, unit) {
  if (v === null || v === undefined) return "–";
  return (v >= 10 ** digits ? v.toFixed(0) : String(Number(v.toPrecision(digits)))) + unit;
}
const millis = (v) => figure(v, 3, " ms");
const perSecond = (v) => figure(v, 2, "/s");
const rateText = (v) => figure(v, 3, "");
const percent = (v) => (v === null || v === undefined ? "–" : v.toFixed(1) + " %");

function statsOptions(width, scale, label, lines) {
  const upTo = scale === "rate" ? 1 : 0.01;
  const axes = [{ label: "time (UTC)", labelSize: 20 }, { scale, label, size: 56 }];
  const scales = { x: { time: true },
    [scale]: { range: (u, min, max) => [0, Math.max(upTo, max || 0) * 1.1] } };
  if (scale === "rate") {
    scales.pct = { range: [0, 100] };
    axes.push({ scale: "pct", label: "failure %", side: 1, size: 44, grid: { show: false } });
  }
  return {
    width, height: 200, scales, axes,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    // With no cursor on the chart (at first, after a hover) its legend shows the newest point.
    hooks: { setCursor: [(u) => { if (u.cursor.idx === null || u.cursor.idx === undefined) showNewest(u); }] },
    series: [{ label: "UTC", value: (u, v) => (v === null ? "–" : clock(v).slice(5, 16)) }, ...lines],
  };
}

const STATS_CHARTS = {
  rate: {
    data: (s) => [s.time, s.rate, s.failure_pct],
    options: (width) => statsOptions(width, "rate", "tasks/s", [
      { label: "tasks/s", scale: "rate", stroke: "#2f6fdd", width: 1.5, value: (u, v) => perSecond(v) },
      // Points: a minute with runs between two without is a point, not a line.
      { label: "failure %", scale: "pct", stroke: "#c7372f", width: 1.5, points: { show: true, size: 4 },
        value: (u, v) => percent(v) },
    ]),
  },
  runtime: {
    data: (s) => [s.time, s.p50_ms, s.p95_ms],
    options: (width) => statsOptions(width, "ms", "runtime (ms)", [
      { label: "p50", scale: "ms", stroke: "#1b9e5a", width: 1.5, points: { show: true, size: 4 },
        value: (u, v) => millis(v) },
      { label: "p95", scale: "ms", stroke: "#c98a0b", width: 1.5, points: { show: true, size: 4 },
        value: (u, v) => millis(v) },
    ]),
  },
};

// The newest point that has every value: a minute with runs.
function showNewest(plot) {
  const values = plot.data[plot.data.length - 1];
  let idx = values.length - 1;
  while (idx > 0 && values[idx] === null) idx -= 1;
  plot.setLegend({ idx });
}

function drawStats(tasks) {
  if (typeof uPlot === "undefined") return;
  for (const section of document.querySelectorAll("section.task-stats")) {
    const task = tasks.find((t) => t.task === section.dataset.task);
    if (!task || !task.series) continue;
    const plots = statsCharts.get(task.task) || {};
    for (const [kind, chart] of Object.entries(STATS_CHARTS)) {
      const cell = section.querySelector(".stats-chart." + kind);
      const data = chart.data(task.series);
      let plot = plots[kind];
      if (!plot || !cell.contains(plot.root)) {
        cell.textContent = "";
        plot = new uPlot(chart.options(Math.max(260, cell.clientWidth)), data, cell);
        plots[kind] = plot;
      } else {
        plot.setData(data);
      }
    }
    statsCharts.set(task.task, plots);
  }
}

window.addEventListener("resize", () => {
  for (const plots of statsCharts.values()) {
    for (const plot of Object.values(plots)) {
      const width = Math.max(260, plot.root.parentElement.clientWidth);
      if (width !== plot.width) plot.setSize({ width, height: plot.height });
    }
  }
});

document.addEventListener("alpine:init", () => {
  Alpine.data("statsPage", () => ({
    data: initial(),
    pct: percent,
    ms: millis,
    rate: perSecond,
    stepText() {
      const step = this.data.step;
      return step % 3600 === 0 ? step / 3600 + " h" : step / 60 + " min";
    },
    init() {
      this.$nextTick(() => drawStats(this.data.tasks));
      setInterval(() => this.refresh(), STATS_REFRESH);
    },
    async refresh() {
      const until = Date.now() / 1000;
      const query = "series=1&since=" + (until - this.data.range) + "&until=" + until;
      const response = await fetch(url("/api/stats?" + query));
      if (!response.ok) return;
      const data = await response.json();
      this.data = { ...data, range: this.data.range };
      this.$nextTick(() => drawStats(data.tasks));
    },
  }));


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
