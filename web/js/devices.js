// Devices view: the pool's boards, their state and link health, refreshed while the view is open.

import { request } from "./api.js";
import { renderError } from "./errors.js";
import { $, ago, bytes, h, hertz, integer, kv } from "./ui.js";

const REFRESH_MS = 2000;

const el = {};
let timer = null;
let inFlight = false;
let lastOk = 0;

const LINK = [
  ["bytes_tx", "Bytes sent", false],
  ["bytes_rx", "Bytes received", false],
  ["frames_tx", "Frames sent", false],
  ["frames_rx", "Frames received", false],
  ["crc_errors", "CRC errors", true],
  ["naks", "NAKs", true],
  ["retransmits", "Retransmits", true],
  ["resyncs", "Resyncs", true],
  ["timeouts", "Timeouts", true],
  ["device_resets", "Unexpected resets", true],
];

const STATE_TEXT = {
  ready: "ready",
  busy: "busy",
  offline: "offline",
  quarantined: "quarantined",
};

export function initDevices() {
  for (const id of ["devices-refresh", "devices-updated", "devices-error", "devices-queue", "devices-list"]) {
    el[id] = $(`#${id}`);
  }
  el["devices-refresh"].addEventListener("click", refresh);
}

export function startDevices() {
  stopDevices();
  refresh();
  timer = setInterval(() => {
    // No polling for a tab nobody looks at.
    if (!document.hidden) refresh();
  }, REFRESH_MS);
}

export function stopDevices() {
  clearInterval(timer);
  timer = null;
}

async function refresh() {
  if (inFlight) return;
  inFlight = true;
  try {
    const body = await request("/v1/devices", { timeoutMs: 8000 });
    renderError(el["devices-error"], null);
    render(body);
    lastOk = Date.now();
    el["devices-updated"].textContent = `Updated ${new Date(lastOk).toLocaleTimeString()}`;
  } catch (err) {
    renderError(el["devices-error"], err);
    if (lastOk) el["devices-updated"].textContent = `Last good update ${new Date(lastOk).toLocaleTimeString()}`;
  } finally {
    inFlight = false;
  }
}

function render(body) {
  const list = el["devices-list"];
  list.dataset.count = String(body.devices.length);
  el["devices-queue"].textContent =
    `Queue: ${body.queue_depth} waiting of ${body.queue_capacity} places · ` +
    `${body.devices.filter((d) => d.state === "ready" || d.state === "busy").length} of ${body.devices.length} devices up`;
  if (!body.devices.length) {
    list.replaceChildren(h("p", { class: "card", text: "No devices are configured. Start the gateway with --device (a serial port, socket://host:port, sim or qemu)." }));
    return;
  }
  list.replaceChildren(...body.devices.map(card));
}

function card(d) {
  const linkItems = LINK.map(([key, label, isProblem]) => {
    const value = d.link[key] || 0;
    return h("div", {}, h("dt", { text: label }),
      h("dd", { class: isProblem && value > 0 ? "bad" : null, dataset: { key, value: String(value) }, text: integer(value) }));
  });
  const identity = d.board
    ? kv([
      ["Board", d.board],
      ["Firmware", d.firmware_version],
      ["Model", `${d.model_id} (${d.input_width}×${d.input_height})`],
      ["Model hash", h("code", { text: d.model_hash })],
      ["Protocol", `v${d.protocol_version}`],
      ["Clock", `${hertz(d.clock_hz)}, ticks in ${d.tick_unit}`],
      ["RAM", d.ram_bytes && d.ram_bytes >= 0xffffffff ? "no limit (host build)" : bytes(d.ram_bytes)],
      ["UART", d.baud ? `${integer(d.baud)} baud${d.max_baud ? ` (max ${integer(d.max_baud)})` : ""}` : "–"],
      ["Connected", d.connected_since ? ago(d.connected_since) : "not connected"],
    ])
    : h("p", { class: "muted", text: "No handshake yet: identity unknown." });
  return h("article", { class: "card device-card", dataset: { url: d.url, state: d.state } },
    h("div", { class: "device-head" },
      h("h2", { text: d.url }),
      h("span", { class: "badge", dataset: { state: d.state } }, STATE_TEXT[d.state] || d.state)),
    identity,
    h("p", { class: "note", text: `${integer(d.requests_ok)} requests served, ${integer(d.requests_failed)} failed, ${integer(d.reconnects)} reconnects.` }),
    h("section", { class: "link-stats" }, h("h3", { text: "Link health" }), h("dl", { class: "link-grid" }, linkItems)),
    d.last_error ? h("p", { class: "device-error", text: `Last error: ${d.last_error}` }) : null);
}
