// Turning the gateway's error codes into sentences a person can act on.

import { h } from "./ui.js";

const FORMATS = "JPEG, PNG, WebP, BMP, GIF or TIFF";

function wait(err) {
  return err.retryAfter ? `Try again in ${Math.max(1, Math.round(err.retryAfter))} s.` : "Try again in a moment.";
}

const BY_CODE = {
  not_an_image: () => ["That file is not an image.", `Choose a photo in ${FORMATS} format.`],
  unsupported_image_format: () => [
    "This image format is not supported.",
    `The gateway reads ${FORMATS}. Convert the picture (for example to JPEG) and try again.`,
  ],
  unsupported_content_type: () => ["The gateway did not accept how the file was sent.", `Choose a ${FORMATS} file.`],
  upload_too_large: () => [
    "The file is too large.",
    "Use a smaller picture: the device only ever sees 320×320 pixels, so a few megapixels is plenty.",
  ],
  payload_too_large: () => ["The file is too large.", "Use a smaller picture."],
  too_many_pixels: () => ["The picture has too many pixels.", "Scale it down (a few megapixels is plenty) and try again."],
  bad_aspect_ratio: () => [
    "The picture is too long and thin.",
    "Crop it closer to a normal photo shape; squeezed into 320×320 it would be a few pixels tall.",
  ],
  corrupt_image: () => ["The image file is damaged.", "It could not be decoded. Save or export it again and retry."],
  empty_image: () => ["The image has no pixels.", "Choose another picture."],
  empty_upload: () => ["The file is empty.", "Choose a picture that has content."],
  missing_image: () => ["No image was sent.", "Choose a file first."],
  bad_multipart: () => ["The upload was garbled on the way.", "Try again; if it keeps happening, reload the page."],
  invalid_parameters: () => ["Some settings are not valid.", "Check the values and try again."],
  too_many_runs: () => ["That benchmark is too long.", "Lower the number of runs or warm-up runs."],
  queue_full: (err) => ["The device queue is full.", `Other requests are waiting for the board. ${wait(err)}`],
  too_many_jobs: (err) => ["The gateway is busy with many requests.", wait(err)],
  no_device_ready: (err) => [
    "No device is ready.",
    `The board is offline, restarting or still starting up. See the Devices view. ${wait(err)}`,
  ],
  device_deadline_exceeded: () => [
    "The device took too long.",
    "It did not finish before the deadline. The board may be slow or its link failing: check the Devices view.",
  ],
  device_error: () => [
    "The device failed while working on this image.",
    "The serial link broke or the board reported an error. The gateway reconnects by itself; try again.",
  ],
  device_rejected: () => ["The device refused the image.", "The board reported it cannot process this frame."],
  unauthorized: () => [
    "This gateway needs an access token.",
    "Enter it under “Access token” at the bottom of the page, then try again.",
  ],
  job_not_found: () => ["The result is no longer available.", "Results are kept for a limited time. Run it again."],
  cancelled: () => ["Cancelled.", "The request was stopped before the device finished."],
  aborted: () => ["Cancelled.", "The request was stopped."],
  client_closed_request: () => ["Cancelled.", "The request was stopped."],
  network_error: () => [
    "Cannot reach the gateway.",
    "Check that it is still running and that this computer can reach it, then try again.",
  ],
  client_timeout: () => ["No answer in time.", "The gateway did not answer. Check the Devices view and try again."],
  bad_response: () => ["The gateway sent an answer this page cannot read.", "Reload the page; it may have been updated."],
  internal_error: () => ["The gateway hit an internal error.", "Try again; if it repeats, the gateway's log says why."],
  camera_denied: () => ["The camera is blocked.", "Allow camera access for this page in the browser, then press Start again."],
  camera_missing: () => ["No camera was found.", "Connect a camera, or use Detect to upload a photo instead."],
  camera_busy: () => ["The camera is in use by another application.", "Close it there and press Start again."],
  camera_unsupported: () => [
    "This browser cannot open the camera here.",
    "Cameras need a secure page (https or localhost) and a current browser.",
  ],
};

const BY_STATUS = {
  400: ["The request was not understood.", "Reload the page and try again."],
  401: BY_CODE.unauthorized(),
  404: ["Not found.", "The gateway does not know this address; it may be an older version."],
  413: BY_CODE.payload_too_large(),
  415: BY_CODE.not_an_image(),
  422: ["The gateway could not use this input.", "Check the file and the settings."],
  429: ["The gateway is busy.", "Try again in a moment."],
  502: BY_CODE.device_error(),
  503: ["No device is ready.", "See the Devices view and try again in a moment."],
  504: BY_CODE.device_deadline_exceeded(),
};

/** {title, hint, detail} for any error (ApiError or otherwise). */
export function explain(err) {
  const code = err && err.code;
  let pair = code && BY_CODE[code] ? BY_CODE[code](err) : null;
  if (!pair && err && err.status) pair = BY_STATUS[err.status] || (err.status >= 500 ? BY_CODE.internal_error() : null);
  if (!pair) pair = ["Something went wrong.", "Try again."];
  const bits = [];
  if (code && code !== "unknown") bits.push(code);
  if (err && err.status) bits.push(`HTTP ${err.status}`);
  const message = err && err.message && err.message !== code ? err.message : "";
  return { title: pair[0], hint: pair[1], detail: message, tag: bits.join(", ") };
}

// Worth a second attempt without changing anything: the device or the gateway was busy or failed.
const RETRIABLE = new Set([
  "queue_full", "too_many_jobs", "no_device_ready", "device_deadline_exceeded", "device_error",
  "network_error", "client_timeout", "internal_error",
]);

export function isRetriable(err) {
  return Boolean(err && (RETRIABLE.has(err.code) || err.status >= 500));
}

/**
 * Show an error in `container` (a role=alert region), or hide it when `err` is null. With `retry`,
 * retriable errors get a "Try again" button that calls it.
 */
export function renderError(container, err, retry = null) {
  container.replaceChildren();
  if (!err) {
    container.hidden = true;
    delete container.dataset.code;
    return;
  }
  const { title, hint, detail, tag } = explain(err);
  container.dataset.code = err.code || "";
  container.append(
    h("p", { class: "error-title", text: title }),
    hint ? h("p", { class: "error-hint", text: hint }) : null,
    detail || tag
      ? h("p", { class: "error-detail" }, detail ? `The gateway said: ${detail}` : "", tag ? [" ", h("code", { text: `(${tag})` })] : null)
      : null,
    retry && isRetriable(err)
      ? h("p", { class: "error-actions" }, h("button", { type: "button", class: "btn", onclick: retry, text: "Try again" }))
      : null,
  );
  container.hidden = false;
}
