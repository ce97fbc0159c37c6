// Live camera: capture a frame, detect, draw, and only then capture the next one. One request in flight
// at most, so the page never adds more than one frame to the device queue and boxes are never stale by
// more than one round trip.

import { detect } from "./api.js";
import { renderError } from "./errors.js";
import { clearScene, drawScene } from "./overlay.js";
import { bindScoreInput, minScore, onMinScore } from "./scores.js";
import { $, seconds, sleep } from "./ui.js";

// The device sees 320x320 anyway; a 640 px JPEG keeps upload and decode small without losing detail.
const CAPTURE_MAX = 640;
const JPEG_QUALITY = 0.85;
const FPS_WINDOW = 10;
const MAX_CONSECUTIVE_FAILURES = 5;
const VIDEO_READY_TIMEOUT_MS = 10000;
// Per-frame deadline on the gateway: a live view is useless if a frame takes minutes.
const FRAME_TIMEOUT_S = 60;

const el = {};
let session = null; // {controller, stream, frames, doneTimes: number[], deviceTimes: number[]}
let lastShot = null; // {width, height, boxes}: redrawn when the minimum score changes

export function initCamera() {
  for (const id of ["camera-start", "camera-stop", "camera-error", "camera-video", "camera-overlay",
    "camera-placeholder", "camera-stats", "cam-frames", "cam-fps", "cam-device", "cam-e2e", "cam-faces", "cam-state"]) {
    el[id] = $(`#${id}`);
  }
  el["camera-start"].addEventListener("click", start);
  bindScoreInput($("#camera-score"), $("#camera-score-value"));
  onMinScore(drawLast);
  el["camera-stop"].addEventListener("click", () => stopCamera("Stopped"));
  document.addEventListener("visibilitychange", () => {
    // A hidden tab would keep the device busy for frames nobody sees.
    if (document.hidden) stopCamera("Paused while the tab was hidden");
  });
}

function setState(text) {
  el["cam-state"].textContent = text;
  el["camera-stats"].dataset.state = text;
}

function cameraError(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") return { code: "camera_denied" };
  if (name === "NotFoundError" || name === "OverconstrainedError") return { code: "camera_missing" };
  if (name === "NotReadableError" || name === "AbortError") return { code: "camera_busy" };
  return { code: "camera_unsupported", message: err && err.message };
}

async function start() {
  if (session) return;
  renderError(el["camera-error"], null);
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    renderError(el["camera-error"], { code: "camera_unsupported" });
    return;
  }
  el["camera-start"].disabled = true;
  setState("Opening the camera");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" },
      audio: false,
    });
  } catch (err) {
    el["camera-start"].disabled = false;
    setState("Idle");
    renderError(el["camera-error"], cameraError(err));
    return;
  }
  const controller = new AbortController();
  session = { controller, stream, frames: 0, doneTimes: [], deviceTimes: [], e2eTimes: [] };
  const video = el["camera-video"];
  video.srcObject = stream;
  el["camera-placeholder"].hidden = true;
  el["camera-stop"].disabled = false;
  resetStats();
  try {
    await video.play();
  } catch {
    // Autoplay of a muted stream is allowed; if play() still rejects, frames are readable anyway.
  }
  loop(session);
}

export function stopCamera(reason = "Stopped") {
  const s = session;
  if (!s) return;
  session = null;
  s.controller.abort();
  for (const track of s.stream.getTracks()) track.stop();
  el["camera-video"].srcObject = null;
  el["camera-placeholder"].hidden = false;
  el["camera-placeholder"].textContent = "The camera is off.";
  el["camera-start"].disabled = false;
  el["camera-stop"].disabled = true;
  setState(reason);
}

function resetStats() {
  el["cam-frames"].textContent = "0";
  el["camera-stats"].dataset.frames = "0";
  for (const id of ["cam-fps", "cam-device", "cam-e2e", "cam-faces"]) el[id].textContent = "–";
  clearScene(el["camera-overlay"]);
  lastShot = null;
}

async function videoReady(video, signal) {
  const deadline = performance.now() + VIDEO_READY_TIMEOUT_MS;
  while (!signal.aborted && (!video.videoWidth || video.readyState < 2)) {
    if (performance.now() > deadline) return false;
    await sleep(50, signal);
  }
  return !signal.aborted;
}

function capture(video) {
  const scale = Math.min(1, CAPTURE_MAX / Math.max(video.videoWidth, video.videoHeight));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => {
    canvas.toBlob((blob) => resolve({ blob, width: canvas.width, height: canvas.height }), "image/jpeg", JPEG_QUALITY);
  });
}

function drawLast() {
  if (!lastShot) return;
  const floor = minScore();
  const boxes = lastShot.boxes.map((b, index) => ({ ...b, index })).filter((b) => b.score >= floor);
  drawScene(el["camera-overlay"], { width: lastShot.width, height: lastShot.height, boxes, space: "camera" });
}

function mean(values) {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
}

async function loop(s) {
  const { signal } = s.controller;
  const video = el["camera-video"];
  if (!(await videoReady(video, signal))) {
    if (!signal.aborted) {
      renderError(el["camera-error"], { code: "camera_busy", message: "the camera produced no picture" });
      stopCamera("No picture from the camera");
    }
    return;
  }
  let failures = 0;
  while (!signal.aborted) {
    setState("Capturing");
    const shot = await capture(video);
    if (signal.aborted) break;
    if (!shot.blob) {
      await sleep(200, signal);
      continue;
    }
    setState("Waiting for the device");
    const started = performance.now();
    let answer;
    try {
      answer = await detect(new File([shot.blob], "camera.jpg", { type: "image/jpeg" }), { signal, timeoutS: FRAME_TIMEOUT_S });
    } catch (err) {
      if (signal.aborted || err.code === "aborted") break;
      failures += 1;
      renderError(el["camera-error"], err);
      const fatal = [401, 413, 415, 422].includes(err.status) || failures >= MAX_CONSECUTIVE_FAILURES;
      if (fatal) {
        stopCamera("Stopped after an error");
        break;
      }
      // Busy or no device: back off as the gateway asks, then try a fresh frame (never a queued old one).
      setState("Device unavailable, retrying");
      await sleep(Math.max(1, err.retryAfter || 1) * 1000, signal);
      continue;
    }
    if (signal.aborted) break;
    failures = 0;
    renderError(el["camera-error"], null);
    const now = performance.now();
    s.frames += 1;
    s.doneTimes.push(now);
    if (s.doneTimes.length > FPS_WINDOW) s.doneTimes.shift();
    const t = answer.timings;
    const deviceS = t.seconds_total ?? answer.latency.transfer_s + answer.latency.device_compute_s;
    s.deviceTimes.push(deviceS);
    s.e2eTimes.push((now - started) / 1000);
    if (s.deviceTimes.length > FPS_WINDOW) s.deviceTimes.shift();
    if (s.e2eTimes.length > FPS_WINDOW) s.e2eTimes.shift();
    lastShot = { width: shot.width, height: shot.height, boxes: answer.boxes };
    drawLast();
    const span = (s.doneTimes[s.doneTimes.length - 1] - s.doneTimes[0]) / 1000;
    const fps = s.doneTimes.length > 1 && span > 0 ? (s.doneTimes.length - 1) / span : NaN;
    el["cam-frames"].textContent = String(s.frames);
    el["camera-stats"].dataset.frames = String(s.frames);
    el["cam-fps"].textContent = Number.isFinite(fps) ? fps.toFixed(fps < 1 ? 2 : 1) : "–";
    el["cam-device"].textContent = seconds(mean(s.deviceTimes));
    el["cam-e2e"].textContent = seconds(mean(s.e2eTimes));
    el["cam-faces"].textContent = String(answer.boxes.length);
  }
}
