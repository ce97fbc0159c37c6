// Entry point: hash routing between the four views, the readiness pill, the access-token form.

import { getToken, request, setToken } from "./api.js";
import { initBench } from "./bench.js";
import { initCamera, stopCamera } from "./camera.js";
import { initDetect } from "./detect.js";
import { initDevices, startDevices, stopDevices } from "./devices.js";
import { $ } from "./ui.js";

const VIEWS = ["detect", "camera", "benchmark", "devices"];
const READY_POLL_MS = 5000;
let active = null;

function route() {
  const wanted = location.hash.replace(/^#/, "");
  const view = VIEWS.includes(wanted) ? wanted : "detect";
  if (view === active) return;
  const previous = active;
  active = view;
  for (const section of document.querySelectorAll("section.view")) section.hidden = section.dataset.view !== view;
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.body.dataset.view = view;
  document.title = `${$(`#view-${view} h1`).textContent} — RNNPool gateway`;
  // Leaving a view releases what it holds: the camera (and the device it keeps busy), device polling.
  if (previous === "camera") stopCamera("Stopped when leaving the view");
  if (previous === "devices") stopDevices();
  if (view === "devices") startDevices();
  // Move focus to the new view's heading on navigation, so keyboard and screen-reader users land on it.
  if (previous !== null) {
    const heading = $(`#view-${view} h1`);
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: false });
  }
}

async function pollReady() {
  const pill = $("#ready-pill");
  const label = pill.querySelector(".status-text");
  // Only real changes touch the role=status region; rewriting the same words would be read out again.
  const text = {
    set textContent(value) {
      if (label.textContent !== value) label.textContent = value;
    },
  };
  try {
    const body = await request("/readyz", { timeoutMs: 5000 });
    pill.dataset.state = "ready";
    text.textContent = body.devices_total > 1 ? `${body.devices_ready} of ${body.devices_total} devices ready` : "Device ready";
    pill.title = body.detail;
  } catch (err) {
    pill.dataset.state = "down";
    if (err.status === 503) {
      text.textContent = "No device ready";
      pill.title = err.message || "";
    } else {
      text.textContent = "Gateway unreachable";
      pill.title = err.message || "";
    }
  }
}

async function showVersion() {
  try {
    const body = await request("/healthz", { timeoutMs: 5000 });
    const footer = $("#footer-version");
    footer.prepend(`Gateway ${body.version} · `);
  } catch {
    // The pill already reports an unreachable gateway.
  }
}

function initToken() {
  const input = $("#token-input");
  input.value = getToken();
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = input.value.trim();
    setToken(value);
    $("#token-status").textContent = value ? "Saved for this tab." : "Cleared.";
    pollReady();
  });
}

function main() {
  initDetect({ isActive: () => active === "detect" });
  initCamera();
  initBench();
  initDevices();
  initToken();
  window.addEventListener("hashchange", route);
  route();
  pollReady();
  setInterval(() => {
    if (!document.hidden) pollReady();
  }, READY_POLL_MS);
  showVersion();
  document.body.dataset.ready = "true";
}

main();
