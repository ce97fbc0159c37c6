// Benchmark view: run POST /v1/benchmark, watch it advance, chart and tabulate the report.

import { imageForm, request } from "./api.js";
import { renderError } from "./errors.js";
import { $, announce, bytes, h, integer, seconds, svg } from "./ui.js";

// The benchmark call answers only at the end; the device's request counters show how far it got.
const PROGRESS_POLL_MS = 700;
// Per run: generous for a QEMU board (~10 s) or a real one at 115200 baud (~20 s), plus the gateway's grace.
const PER_RUN_BUDGET_S = 180;

const el = {};
let running = null; // {controller}
let report = null;

export function initBench() {
  for (const id of ["bench-form", "bench-files-field", "bench-files", "bench-n", "bench-warmup", "bench-start",
    "bench-cancel", "bench-error", "bench-progress", "bench-bar", "bench-progress-text", "bench-results",
    "bench-chart", "bench-summary", "bench-samples", "bench-meta", "bench-download"]) {
    el[id] = $(`#${id}`);
  }
  for (const radio of el["bench-form"].querySelectorAll('input[name="source"]')) {
    radio.addEventListener("change", () => {
      el["bench-files-field"].hidden = source() !== "files";
    });
  }
  el["bench-form"].addEventListener("submit", (e) => {
    e.preventDefault();
    start();
  });
  el["bench-cancel"].addEventListener("click", () => running && running.controller.abort());
  el["bench-download"].addEventListener("click", download);
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (report && !el["bench-results"].hidden) drawChart(report);
    }, 150);
  });
}

function source() {
  const checked = el["bench-form"].querySelector('input[name="source"]:checked');
  return checked ? checked.value : "synthetic";
}

function readInt(input, label, min, max) {
  const value = Number(input.value);
  if (!Number.isInteger(value) || value < min || value > max) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
    throw { code: "invalid_parameters", message: `${label} must be a whole number from ${min} to ${max}` };
  }
  input.removeAttribute("aria-invalid");
  return value;
}

async function deviceRequestCount(signal) {
  try {
    const body = await request("/v1/devices", { signal, timeoutMs: 5000 });
    return body.devices.reduce((sum, d) => sum + d.requests_ok + d.requests_failed, 0);
  } catch {
    return null;
  }
}

async function start() {
  if (running) return;
  renderError(el["bench-error"], null);
  let n;
  let warmup;
  let files = [];
  try {
    n = readInt(el["bench-n"], "Measured runs", 1, 100);
    warmup = readInt(el["bench-warmup"], "Warm-up runs", 0, 20);
    if (source() === "files") {
      files = Array.from(el["bench-files"].files || []);
      if (!files.length) {
        el["bench-files"].focus();
        throw { code: "missing_image", message: "choose at least one image, or use the built-in set" };
      }
    }
  } catch (err) {
    renderError(el["bench-error"], err);
    return;
  }

  const controller = new AbortController();
  running = { controller };
  el["bench-start"].disabled = true;
  el["bench-cancel"].disabled = false;
  el["bench-progress"].hidden = false;
  el["bench-results"].dataset.state = "running";
  const total = n + warmup;
  const started = performance.now();
  const baseline = await deviceRequestCount(controller.signal);
  let finishedRuns = 0;
  const tick = () => {
    const elapsed = (performance.now() - started) / 1000;
    const counted = baseline === null ? "" : `${Math.min(finishedRuns, total)} of ${total} runs finished · `;
    el["bench-progress-text"].textContent = `Running ${total} detections (${warmup} warm-up) one at a time: ${counted}${elapsed.toFixed(1)} s`;
    if (baseline === null) el["bench-bar"].removeAttribute("value");
    else el["bench-bar"].value = Math.min(1, finishedRuns / total);
  };
  tick();
  announce(`Benchmark started: ${total} runs.`);
  const clock = setInterval(tick, 250);
  let polling = true;
  (async () => {
    while (polling && baseline !== null) {
      await new Promise((r) => setTimeout(r, PROGRESS_POLL_MS));
      if (!polling) break;
      const count = await deviceRequestCount(controller.signal);
      // Other clients' requests count too; clamp so the bar never claims more than the run holds.
      if (count !== null) finishedRuns = Math.max(finishedRuns, Math.min(total - 1, count - baseline));
    }
  })();

  const query = new URLSearchParams({ n: String(n), warmup: String(warmup) });
  try {
    report = await request(`/v1/benchmark?${query}`, {
      method: "POST",
      body: files.length ? imageForm("images", files) : undefined,
      signal: controller.signal,
      timeoutMs: total * PER_RUN_BUDGET_S * 1000,
    });
    renderReport(report);
    announce(`Benchmark finished: ${report.n} runs, median end to end ${seconds(report.summary.end_to_end_s.median)}.`);
  } catch (err) {
    el["bench-results"].dataset.state = "failed";
    renderError(el["bench-error"], err, start);
  } finally {
    polling = false;
    clearInterval(clock);
    running = null;
    el["bench-start"].disabled = false;
    el["bench-cancel"].disabled = true;
    el["bench-progress"].hidden = true;
  }
}

function renderReport(r) {
  el["bench-results"].hidden = false;
  el["bench-results"].dataset.state = "done";
  el["bench-results"].dataset.n = String(r.n);
  const d = r.device;
  const images = r.image_source === "synthetic" ? `built-in synthetic set (seed ${r.seed})` : `${r.images.length} uploaded image(s)`;
  el["bench-meta"].textContent =
    `${r.n} measured run${r.n === 1 ? "" : "s"} (+${r.warmup} warm-up) on ${d.board}, firmware ${d.firmware_version}, ` +
    `model ${d.model_id}; ${images}. Peak RAM ${bytes(r.peak_ram_bytes)}. ${new Date(r.created_at).toLocaleString()}.`;
  drawChart(r);
  el["bench-summary"].replaceChildren(summaryTable(r));
  el["bench-samples"].replaceChildren(samplesTable(r.samples));
  el["bench-results"].scrollIntoView({ block: "start" });
}

function drawChart(r) {
  el["bench-chart"].replaceChildren(
    h("ul", { class: "chart-legend" },
      h("li", {}, h("span", { class: "swatch bar-e2e", "aria-hidden": "true" }), "End to end (submit to result)"),
      h("li", {}, h("span", { class: "swatch bar-compute", "aria-hidden": "true" }), "Device compute (after the last row)")),
    chart(r.samples, el["bench-chart"].clientWidth));
}

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  const f = raw / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
}

function chart(samples, available) {
  // Drawn at the container's pixel width so that labels keep their size on a phone and on a desktop.
  const W = Math.max(280, Math.round(available || 760));
  const H = W < 500 ? 220 : 300;
  const m = { l: 56, r: 12, t: 14, b: 40 };
  const plotW = W - m.l - m.r;
  const plotH = H - m.t - m.b;
  const maxV = Math.max(1e-6, ...samples.map((s) => Math.max(s.end_to_end_s, s.device_compute_s)));
  const step = niceStep(maxV / 4);
  const top = Math.ceil(maxV / step) * step;
  const y = (v) => m.t + plotH - (v / top) * plotH;
  const groupW = plotW / samples.length;
  const barW = Math.max(1, Math.min(28, groupW * 0.36));
  const grid = [];
  for (let v = 0; v <= top + step / 2; v += step) {
    grid.push(svg("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }),
      svg("text", { x: m.l - 8, y: y(v) + 4, "text-anchor": "end", text: seconds(v) }));
  }
  const labelEvery = Math.ceil(samples.length / Math.max(1, Math.floor(plotW / 30)));
  const bars = samples.map((s, i) => {
    const cx = m.l + groupW * (i + 0.5);
    const bar = (kind, cls, value, dx, label) => svg("rect", {
      class: `bar ${cls}`, x: cx + dx, y: y(value), width: barW, height: Math.max(0.5, y(0) - y(value)),
      dataset: { kind, index: String(s.index), seconds: String(value) },
    }, svg("title", { text: `Run ${s.index + 1} (${s.image}): ${label} ${seconds(value)}` }));
    return svg("g", {},
      bar("end_to_end", "bar-e2e", s.end_to_end_s, -barW - 1, "end to end"),
      bar("device_compute", "bar-compute", s.device_compute_s, 1, "device compute"),
      i % labelEvery === 0 ? svg("text", { class: "tick", x: cx, y: H - m.b + 16, "text-anchor": "middle", text: String(s.index + 1) }) : null);
  });
  const mean = (k) => samples.reduce((a, s) => a + s[k], 0) / samples.length;
  return svg("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Bar chart of ${samples.length} runs: end to end averages ${seconds(mean("end_to_end_s"))}, device compute averages ${seconds(mean("device_compute_s"))}. The tables below hold every value.`,
    dataset: { samples: String(samples.length) },
  },
  svg("g", { class: "grid" }, grid),
  svg("g", { class: "axis" },
    svg("line", { x1: m.l, x2: W - m.r, y1: y(0), y2: y(0) }),
    svg("text", { x: m.l + plotW / 2, y: H - 6, "text-anchor": "middle", text: "Run" }),
    bars));
}

const SUMMARY_COLUMNS = [
  ["end_to_end_s", "End to end"],
  ["transfer_s", "UART transfer"],
  ["device_compute_s", "Device compute"],
  ["device_seconds_total", "Device clock total"],
];
const STATS = [["min", "Min"], ["median", "Median"], ["p95", "p95"], ["max", "Max"], ["mean", "Mean"]];

// Statistics as rows and measures as columns: four narrow columns fit a phone, six did not.
function summaryTable(r) {
  const cols = SUMMARY_COLUMNS.filter(([key]) => r.summary[key]);
  const head = h("tr", {}, h("td", {}), cols.map(([key, label]) => h("th", { scope: "col", dataset: { key }, text: label })));
  const count = h("tr", { class: "count-row" }, h("th", { scope: "row", text: "Runs" }),
    cols.map(([key]) => h("td", { dataset: { key, count: String(r.summary[key].count) }, text: String(r.summary[key].count) })));
  const rows = STATS.map(([stat, label]) => h("tr", { dataset: { stat } }, h("th", { scope: "row", text: label }),
    cols.map(([key]) => h("td", { text: seconds(r.summary[key][stat]) }))));
  return h("table", { class: "summary-table" },
    h("caption", { text: `Seconds over ${r.n} measured runs. Device compute is timed by the gateway from the last row sent; the device clock total is the board's own count, request to result.` }),
    h("thead", {}, head),
    h("tbody", {}, count, rows));
}

function samplesTable(samples) {
  return h("table", { class: "samples-table" },
    h("thead", {}, h("tr", {}, ["Run", "Image", "Size", "End to end", "Transfer", "Compute", "Device clock", "Faces", "Peak RAM"]
      .map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, samples.map((s) => h("tr", { dataset: { index: String(s.index) } },
      h("td", { text: String(s.index + 1) }),
      h("td", { text: s.image }),
      h("td", { text: `${s.width}×${s.height}` }),
      h("td", { text: seconds(s.end_to_end_s) }),
      h("td", { text: seconds(s.transfer_s) }),
      h("td", { text: seconds(s.device_compute_s) }),
      h("td", { text: seconds(s.device_seconds_total) }),
      h("td", { text: integer(s.boxes) }),
      h("td", { text: bytes(s.peak_ram_bytes) })))));
}

function download() {
  if (!report) return;
  const blob = new Blob([JSON.stringify(report, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: `rnnpool-benchmark-${report.created_at.replace(/[:+]/g, "").replace(/\s/g, "")}.json` });
  document.body.append(a);
  a.click();
  a.remove();
  // Revoke later: the download may not have read the blob yet when click() returns.
  setTimeout(() => URL.revokeObjectURL(url), 30000);
}
