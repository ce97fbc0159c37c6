// Small DOM and formatting helpers shared by the views.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.setAttribute("class", value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element. Text is always set as text, never parsed: server strings cannot inject markup. */
export function h(tag, attrs, ...children) {
  return append(apply(document.createElement(tag), attrs), children);
}

export function svg(tag, attrs, ...children) {
  return append(apply(document.createElementNS(SVG_NS, tag), attrs), children);
}

export function $(selector, root = document) {
  const node = root.querySelector(selector);
  if (!node) throw new Error(`missing element ${selector}`);
  return node;
}

export function show(node, visible = true) {
  node.hidden = !visible;
}

// ---- formatting ----------------------------------------------------------------------------------

export function seconds(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs === 0) return "0 s";
  if (abs < 0.001) return `${(value * 1e6).toFixed(0)} µs`;
  if (abs < 1) return `${(value * 1000).toFixed(abs < 0.01 ? 2 : abs < 0.1 ? 1 : 0)} ms`;
  if (abs < 60) return `${value.toFixed(abs < 10 ? 2 : 1)} s`;
  const m = Math.floor(abs / 60);
  return `${m} min ${Math.round(abs - m * 60)} s`;
}

export function bytes(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (value < 1024) return `${value} B`;
  const trim = (text) => text.replace(/\.0+$/, "");
  if (value < 1024 * 1024) return `${trim((value / 1024).toFixed(value < 10 * 1024 ? 2 : 1))} KiB`;
  return `${(value / 1024 / 1024).toFixed(2)} MiB`;
}

export function integer(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return Math.round(value).toLocaleString("en-US");
}

export function hertz(value) {
  if (!value) return "unknown";
  if (value >= 1e9) return `${(value / 1e9).toFixed(value % 1e9 ? 2 : 0)} GHz`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(value % 1e6 ? 1 : 0)} MHz`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(0)} kHz`;
  return `${value} Hz`;
}

export function percent(fraction) {
  if (!Number.isFinite(fraction)) return "–";
  return `${(fraction * 100).toFixed(fraction < 0.1 ? 1 : 0)} %`;
}

export function ago(unixSeconds) {
  if (!unixSeconds) return "–";
  const s = Math.max(0, Date.now() / 1000 - unixSeconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} days ago`;
}

/** A definition list from [label, value] pairs; values may be nodes. */
export function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
}

/** Sleep that ends early when `signal` aborts, so loops waiting on it stop at once. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** Tell screen-reader users about a milestone (stage change, run finished) without moving focus. */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  // Clearing first makes a repeated message ("Done" twice in a row) be read again.
  region.textContent = "";
  setTimeout(() => { region.textContent = text; }, 50);
}
