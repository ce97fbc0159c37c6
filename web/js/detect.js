// Detect view: pick / drop / paste an image, follow its job live, draw the faces, explain the numbers.

import { cancelJob, createJob, followJob } from "./api.js";
import { renderError } from "./errors.js";
import { clearScene, drawScene, highlightBox } from "./overlay.js";
import { bindScoreInput, minScore, onMinScore } from "./scores.js";
import { $, announce, bytes, h, hertz, integer, kv, percent, seconds, svg } from "./ui.js";

// STM32F439ZI: 192 KB contiguous SRAM (the 64 KB CCM is not counted: the firmware does not use it).
const F439_RAM_BYTES = 192 * 1024;
// Boards without a real limit (the host build) report all ones or a huge figure; a gauge against
// gigabytes says nothing, so those are measured against the target microcontroller instead.
const MCU_RAM_CEILING = 16 * 1024 * 1024;
// RNNPool paper, Table 5: RNNPool-Face-M4 peak RAM.
const PAPER_PEAK_RAM_BYTES = 188 * 1000;
const STEPS = ["uploading", "queued", "transmitting", "computing", "done"];
const STEP_NAMES = {
  uploading: "Uploading the image",
  queued: "Queued for a device",
  transmitting: "Sending the frame to the device",
  computing: "The device is computing",
  done: "Detection finished",
};
const PREVIEW_TIMEOUT_MS = 10000;

const el = {};
let current = null; // {controller, created}
let objectUrl = null;
let displayable = false;
let result = null;
let elapsedTimer = null;

export function initDetect({ isActive }) {
  for (const id of ["file-input", "dropzone", "detect-error", "detect-progress", "detect-steps", "detect-bar",
    "detect-progress-text", "detect-cancel", "detect-stage", "frame-toggle", "views-toggle", "detect-count", "detect-overlay",
    "detect-caption", "detect-side", "faces-body", "latency-body", "ram-body", "identity-body"]) {
    el[id] = $(`#${id}`);
  }

  el["file-input"].addEventListener("change", () => {
    const file = el["file-input"].files && el["file-input"].files[0];
    if (file) run(file);
    // Reset so choosing the same file again still fires "change".
    el["file-input"].value = "";
  });

  // Chromium opens a file input's chooser on Space only; people expect Enter to work as well.
  el["file-input"].addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      el["file-input"].click();
    }
  });

  const zone = el.dropzone;
  let depth = 0; // dragenter/leave fire for every child; count them so the highlight does not flicker
  zone.addEventListener("dragenter", (e) => { e.preventDefault(); depth += 1; zone.classList.add("dragging"); });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; });
  zone.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) zone.classList.remove("dragging"); });
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    zone.classList.remove("dragging");
    const file = e.dataTransfer.files && e.dataTransfer.files[0];
    if (file) run(file);
    else renderError(el["detect-error"], { code: "missing_image" });
  });
  // A drop that misses the zone must not navigate away from the page to the dropped file.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  document.addEventListener("paste", (e) => {
    if (!isActive()) return;
    const target = e.target;
    if (target instanceof HTMLInputElement && target.type !== "file") return;
    const items = Array.from((e.clipboardData && e.clipboardData.items) || []);
    const item = items.find((it) => it.kind === "file");
    if (!item) return;
    e.preventDefault();
    const file = item.getAsFile();
    if (file) run(new File([file], file.name || "pasted-image", { type: file.type }));
  });

  el["frame-toggle"].addEventListener("change", drawCurrent);
  bindScoreInput($("#score-filter"), $("#score-filter-value"));
  onMinScore(drawCurrent);
  el["detect-cancel"].addEventListener("click", () => stop(true));
}

/** Programmatic entry (used by tests and by the paste handler): detect faces in `file`. */
export async function run(file) {
  stop(false);
  const controller = new AbortController();
  const job = { controller, created: null };
  current = job;
  result = null;
  renderError(el["detect-error"], null);

  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = URL.createObjectURL(file);
  const preview = await loadPreview(objectUrl);
  if (current !== job) return;
  displayable = preview !== null;

  el["detect-side"].hidden = true;
  el["frame-toggle"].checked = false;
  el["frame-toggle"].disabled = true;
  el["detect-stage"].dataset.jobId = "";
  el["detect-stage"].dataset.state = "running";
  if (displayable) {
    drawScene(el["detect-overlay"], {
      href: objectUrl, width: preview.width, height: preview.height, boxes: [], space: "preview",
    });
    el["detect-count"].textContent = "Detecting…";
    el["detect-caption"].textContent = `${file.name || "Pasted image"} · ${preview.width} × ${preview.height}`;
    el["detect-stage"].classList.add("busy");
    el["detect-stage"].hidden = false;
  } else {
    el["detect-stage"].hidden = true;
  }
  el.dropzone.classList.add("compact");
  startProgress();

  try {
    const created = await createJob(file, {
      includeFrame: true,
      views: el["views-toggle"].checked ? 2 : 1,
      signal: controller.signal,
      onUpload: (loaded, total) => {
        if (current !== job) return;
        setProgress("uploading", total ? loaded / total : null, `Uploading ${bytes(loaded)} of ${bytes(total)}`);
      },
    });
    job.created = created;
    el["detect-stage"].dataset.jobId = created.id;
    setProgress("queued", null, "Waiting for a free device");
    const answer = await followJob(created, {
      signal: controller.signal,
      onEvent: (name, data) => {
        if (current === job) onJobEvent(name, data);
      },
    });
    if (current !== job) return;
    setProgress("done", 1, "Done");
    showResult(answer);
    const n = answer.boxes.length;
    announce(`Detection finished: ${n === 0 ? "no faces" : n === 1 ? "1 face" : `${n} faces`} found.`);
  } catch (err) {
    if (current !== job) return;
    stopProgress();
    el["detect-stage"].classList.remove("busy");
    el["detect-stage"].dataset.state = "failed";
    if (err.code === "aborted") {
      el["detect-count"].textContent = "Cancelled";
    } else {
      renderError(el["detect-error"], err, () => run(file));
      el["detect-count"].textContent = "";
      if (!displayable) el["detect-stage"].hidden = true;
    }
    el["detect-error"].scrollIntoView({ block: "nearest" });
  } finally {
    if (current === job) {
      current = null;
      stopProgress();
    }
  }
}

/** Cancel the running detection and its job on the gateway (the device would otherwise keep working on it). */
function stop(byUser) {
  const job = current;
  if (!job) return;
  current = null;
  job.controller.abort();
  if (job.created) cancelJob(job.created);
  stopProgress();
  el["detect-stage"].classList.remove("busy");
  if (byUser) {
    el["detect-count"].textContent = "Cancelled";
    el["detect-stage"].dataset.state = "cancelled";
  }
}

function loadPreview(url) {
  // Browsers cannot show every format the gateway accepts (TIFF, for one): then only the device's
  // frame is shown, which the gateway renders as PNG.
  return new Promise((resolve) => {
    const img = new Image();
    const timer = setTimeout(() => resolve(null), PREVIEW_TIMEOUT_MS);
    img.onload = () => { clearTimeout(timer); resolve(img.naturalWidth ? { width: img.naturalWidth, height: img.naturalHeight } : null); };
    img.onerror = () => { clearTimeout(timer); resolve(null); };
    img.src = url;
  });
}

// ---- progress -----------------------------------------------------------------------------------

let stageStarted = 0;
let stageText = "";

function startProgress() {
  el["detect-progress"].hidden = false;
  el["detect-progress"].dataset.seen = "";
  el["detect-cancel"].disabled = false;
  stageStarted = performance.now();
  setProgress("uploading", 0, "Uploading");
  clearInterval(elapsedTimer);
  // The elapsed clock keeps moving during long silent stages (queued, computing) so the page never looks frozen.
  elapsedTimer = setInterval(renderProgressText, 250);
}

function stopProgress() {
  clearInterval(elapsedTimer);
  elapsedTimer = null;
  el["detect-cancel"].disabled = true;
  el["detect-progress"].hidden = true;
}

function setProgress(step, fraction, text) {
  const index = STEPS.indexOf(step);
  for (const li of el["detect-steps"].children) {
    const i = STEPS.indexOf(li.dataset.step);
    li.dataset.status = i < index ? "done" : i === index ? "current" : "todo";
    if (i === index) li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
  }
  el["detect-progress"].dataset.step = step;
  const seen = (el["detect-progress"].dataset.seen || "").split(",").filter(Boolean);
  if (!seen.includes(step)) {
    el["detect-progress"].dataset.seen = [...seen, step].join(",");
    if (step !== "done") announce(STEP_NAMES[step]);
  }
  const bar = el["detect-bar"];
  if (fraction === null) bar.removeAttribute("value");
  else bar.value = Math.min(1, Math.max(0, fraction));
  stageText = text;
  renderProgressText();
}

function renderProgressText() {
  const elapsed = (performance.now() - stageStarted) / 1000;
  el["detect-progress-text"].textContent = `${stageText} · ${elapsed.toFixed(1)} s`;
}

function onJobEvent(name, data) {
  if (name === "queued") setProgress("queued", null, "Waiting for a free device");
  else if (name === "transmitting") {
    const sent = data.bytes_sent || 0;
    const total = data.bytes_total || 0;
    const frac = total ? sent / total : null;
    el["detect-progress"].dataset.bytesSent = String(sent);
    setProgress("transmitting", frac,
      `Sending the frame to the device: ${integer(sent)} of ${integer(total)} bytes${total ? ` (${percent(frac)})` : ""}`);
  } else if (name === "computing") {
    setProgress("computing", null, "All rows sent; the device is finishing the detection");
  }
}

// ---- result -------------------------------------------------------------------------------------

function showResult(answer) {
  result = answer;
  const stage = el["detect-stage"];
  stage.classList.remove("busy");
  stage.dataset.state = "done";
  stage.dataset.requestId = answer.request_id;
  stage.hidden = false;
  const toggle = el["frame-toggle"];
  toggle.disabled = !answer.frame || !displayable;
  toggle.checked = !displayable && !!answer.frame;
  drawCurrent();
  renderLatency(answer);
  renderRam(answer);
  renderIdentity(answer);
  el["detect-side"].hidden = false;
}

function drawCurrent() {
  if (!result) return;
  const overlay = el["detect-overlay"];
  const frameMode = el["frame-toggle"].checked && result.frame;
  const floor = minScore();
  // Indices stay those of the API's list, so a drawn box can always be traced back to the response.
  const pick = (boxes) => boxes.map((b, index) => ({ ...b, index })).filter((b) => b.score >= floor);
  const n = result.boxes.length;
  const shown = pick(result.boxes).length;
  const noun = (k) => (k === 1 ? "face" : "faces");
  el["detect-count"].textContent = n === 0 ? "No faces found"
    : shown === n ? `${n} ${noun(n)}` : `${shown} of ${n} ${noun(n)} (score ≥ ${floor.toFixed(2)})`;
  if (frameMode) {
    const f = result.frame;
    const lb = result.letterbox;
    drawScene(overlay, {
      href: `data:image/png;base64,${f.png_base64}`,
      width: f.width,
      height: f.height,
      boxes: pick(f.boxes),
      space: "frame",
      area: { x: lb.pad_x, y: lb.pad_y, w: lb.scaled_width, h: lb.scaled_height },
    });
    el["detect-caption"].textContent =
      `What the device saw: ${f.width} × ${f.height}, 8-bit mono. The picture was scaled to ` +
      `${lb.scaled_width} × ${lb.scaled_height} (dashed) and padded with black; boxes are in frame pixels.` +
      (displayable ? "" : " (Your browser cannot display the original file format.)");
  } else if (displayable) {
    const im = result.image;
    drawScene(overlay, { href: objectUrl, width: im.width, height: im.height, boxes: pick(result.boxes), space: "original" });
    el["detect-caption"].textContent =
      `Your picture: ${im.width} × ${im.height} ${im.format}` +
      (im.exif_orientation !== 1 ? `, rotated by its EXIF orientation (${im.exif_orientation})` : "") +
      "; boxes are in its pixels.";
  } else {
    clearScene(overlay);
  }
  renderFaces(pick(frameMode ? result.frame.boxes : result.boxes), frameMode ? "frame" : "picture", n);
}

function renderFaces(boxes, space, total) {
  const body = el["faces-body"];
  const overlay = el["detect-overlay"];
  if (!boxes.length) {
    body.replaceChildren(
      h("p", { class: "big-number" }, "0", h("small", { text: "faces" })),
      h("p", {
        class: "note",
        text: total
          ? `All ${total} boxes score below ${minScore().toFixed(2)}; lower the minimum score to see them.`
          : "Nothing scored above the device's detection threshold. Small or turned faces are hard at 320×320.",
      }),
    );
    return;
  }
  const rows = boxes.map((b) => {
    const i = b.index;
    const tr = h("tr", {},
      h("td", { text: String(i + 1) }),
      h("td", { text: b.score.toFixed(2) }),
      h("td", { text: b.x.toFixed(0) }),
      h("td", { text: b.y.toFixed(0) }),
      h("td", { text: b.w.toFixed(0) }),
      h("td", { text: b.h.toFixed(0) }));
    tr.addEventListener("mouseenter", () => highlightBox(overlay, i));
    tr.addEventListener("mouseleave", () => highlightBox(overlay, -1));
    return tr;
  });
  body.replaceChildren(
    h("p", { class: "big-number" }, String(boxes.length),
      h("small", { text: `${boxes.length === 1 ? "face" : "faces"}${boxes.length < total ? ` shown of ${total}` : ""}` })),
    h("div", { class: "table-wrap faces-scroll", tabindex: boxes.length > 8 ? "0" : null, "aria-label": "Detected boxes" },
      h("table", { class: "faces-table" },
        h("caption", { text: `Boxes in ${space} pixels` }),
        h("thead", {}, h("tr", {}, ["#", "Score", "x", "y", "Width", "Height"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, rows))),
  );
}

const SEGMENTS = [
  ["decode_s", "Decode and letterbox (gateway)", "seg-decode"],
  ["queue_wait_s", "Waiting for the device", "seg-queue"],
  ["transfer_s", "Sending over the UART", "seg-transfer"],
  ["device_compute_s", "Device compute after the last row", "seg-compute"],
];

function renderLatency(answer) {
  const lat = answer.latency;
  const parts = SEGMENTS.map(([key, label, cls]) => ({ key, label, cls, value: Math.max(0, lat[key] || 0) }));
  const known = parts.reduce((s, p) => s + p.value, 0);
  const other = Math.max(0, lat.total_s - known);
  parts.push({ key: "other_s", label: "Other (HTTP, scheduling)", cls: "seg-other", value: other });
  const total = Math.max(lat.total_s, known, 1e-9);
  const summary = parts.map((p) => `${p.label} ${seconds(p.value)}`).join(", ");
  const bar = h("div", { class: "latency-bar", role: "img", "aria-label": `Total ${seconds(lat.total_s)}: ${summary}` },
    parts.map((p) => {
      const seg = h("span", { class: p.cls, title: `${p.label}: ${seconds(p.value)}`, dataset: { key: p.key, seconds: String(p.value) } });
      seg.style.setProperty("width", `${(p.value / total) * 100}%`);
      return seg;
    }));
  const legend = h("ul", { class: "legend" },
    parts.map((p) => h("li", {}, h("span", { class: `swatch ${p.cls}`, "aria-hidden": "true" }), h("span", { text: p.label }),
      h("span", { class: "value", text: seconds(p.value) }))),
    h("li", { class: "total" }, h("span", { text: "Total, request to answer" }), h("span", { class: "value", text: seconds(lat.total_s) })));
  const t = answer.timings;
  const unitNote = {
    cycles: "CPU cycles (DWT counter)",
    instructions: "QEMU instruction counts (-icount), not silicon cycles",
    ns: "host build: wall-clock nanoseconds",
  }[t.tick_unit] || t.tick_unit;
  const measured = t.seconds_total !== null && t.seconds_total !== undefined
    ? `Measured on the device: ${seconds(t.seconds_total)} from request to result (receiving ${seconds(t.seconds_receive)}, computing ${seconds(t.seconds_compute)}; rows are computed while they arrive). `
    : "";
  const passes = answer.views > 1
    ? `The device ran ${answer.views} passes, on the frame and on its mirror image, and the boxes were fused; the times add up both. `
    : "";
  el["latency-body"].replaceChildren(bar, legend,
    h("p", { class: "note", text: `${passes}${measured}${integer(t.ticks_total)} ticks in ${unitNote}${t.clock_hz ? ` at ${hertz(t.clock_hz)}` : ""}.` }));
}

function renderRam(answer) {
  const mem = answer.memory;
  const limited = mem.ram_bytes && mem.ram_bytes <= MCU_RAM_CEILING;
  const ram = limited ? mem.ram_bytes : F439_RAM_BYTES;
  const board = answer.device.board;
  const frac = mem.peak_ram_bytes / ram;
  const level = frac > 1 ? "over" : frac > 0.8 ? "high" : "ok";
  // Semicircle: 100 path units from left to right, filled by dash length.
  const arc = "M 12 70 A 58 58 0 0 1 128 70";
  const paperFrac = PAPER_PEAK_RAM_BYTES / ram;
  const angle = Math.PI * (1 - Math.min(1, paperFrac));
  const mark = paperFrac <= 1
    ? svg("line", {
      class: "gauge-mark",
      x1: 70 + 48 * Math.cos(angle), y1: 70 - 48 * Math.sin(angle),
      x2: 70 + 68 * Math.cos(angle), y2: 70 - 68 * Math.sin(angle),
    }, svg("title", { text: "RNNPool paper: 188 KB" }))
    : null;
  const gauge = svg("svg", {
    viewBox: "0 0 140 84", role: "meter", "aria-label": "Peak RAM",
    "aria-valuemin": 0, "aria-valuemax": ram, "aria-valuenow": mem.peak_ram_bytes,
    "aria-valuetext": `${bytes(mem.peak_ram_bytes)} of ${bytes(ram)}`,
  },
  svg("path", { class: "gauge-track", d: arc, "stroke-width": 14, pathLength: 100 }),
  svg("path", {
    class: "gauge-fill", d: arc, "stroke-width": 14, pathLength: 100, "data-level": level,
    "stroke-dasharray": `${Math.min(100, frac * 100)} 200`,
  }),
  mark);
  el["ram-body"].replaceChildren(
    h("div", { class: "gauge", dataset: { peak: String(mem.peak_ram_bytes), ram: String(ram) } }, gauge,
      h("div", { class: "gauge-text" },
        h("div", { class: "gauge-value", text: bytes(mem.peak_ram_bytes) }),
        h("p", { text: limited ? `of ${bytes(ram)} on this board · ${percent(frac)}` : `of the STM32F439's ${bytes(ram)} · ${percent(frac)}` }),
        h("p", { text: `Stack high-water mark ${bytes(mem.stack_high_water_bytes)}` }))),
    h("p", { class: "note", text: (limited ? "" : `The ${board} board has no RAM limit of its own, so the gauge uses the target microcontroller's SRAM. `) +
      "The tick marks the RNNPool paper's 188 KB for the same model, which keeps whole activation maps; this firmware streams rows through line buffers." }),
  );
}

function renderIdentity(answer) {
  const d = answer.device;
  const t = answer.timings;
  const im = answer.image;
  el["identity-body"].replaceChildren(kv([
    ["Board", d.board],
    ["Firmware", d.firmware_version],
    ["Model", d.model_id],
    ["Model hash", h("code", { text: d.model_hash })],
    ["Protocol", `v${d.protocol_version}`],
    ["Clock", hertz(t.clock_hz)],
    ["Device", h("code", { text: d.url })],
    ["Your image", `${im.width} × ${im.height} ${im.format} (${im.mode}${im.frames > 1 ? `, ${im.frames} frames, first used` : ""})`],
    ["Request", h("code", { text: answer.request_id })],
  ]));
}
