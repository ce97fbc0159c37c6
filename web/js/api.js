// Client for the gateway's HTTP API (same origin only). Every failure becomes an ApiError with the
// gateway's stable error code, so the views can explain it (errors.js) instead of failing silently.

const TOKEN_KEY = "rnnpool.token";
// A job that never reaches done/failed (a stuck proxy, a lost stream) must not hang the page forever;
// the gateway fails jobs at its own deadline well before this.
const JOB_WATCHDOG_MS = 15 * 60 * 1000;
const POLL_MS = 1000;

export class ApiError extends Error {
  constructor({ status = 0, code = "unknown", message = "", retryAfter = null } = {}) {
    super(message || code);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// Fallback when sessionStorage is unavailable.
let memoryToken = "";

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage may be disabled (private mode); the token then lasts until reload only.
  }
  memoryToken = value;
}

function authHeaders() {
  const token = getToken() || memoryToken;
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function retryAfterSeconds(value) {
  if (!value) return null;
  const n = Number(value);
  if (Number.isFinite(n)) return Math.max(0, n);
  const when = Date.parse(value);
  return Number.isFinite(when) ? Math.max(0, Math.round((when - Date.now()) / 1000)) : null;
}

/** Build an ApiError from a status, the raw body text and the Retry-After header. */
function errorFromBody(status, text, retryAfter) {
  let code = `http_${status}`;
  let message = "";
  try {
    const body = JSON.parse(text);
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || "";
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch {
    message = (text || "").slice(0, 300);
  }
  return new ApiError({ status, code, message, retryAfter: retryAfterSeconds(retryAfter) });
}

function networkError(err) {
  if (err && err.name === "AbortError") return new ApiError({ code: "aborted", message: "cancelled" });
  return new ApiError({ code: "network_error", message: String(err && err.message ? err.message : err) });
}

/** fetch + JSON, throwing ApiError for network failures and non-2xx answers. */
export async function request(path, { method = "GET", body, headers = {}, signal, timeoutMs = 0 } = {}) {
  const controller = new AbortController();
  const onAbort = () => controller.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  const timer = timeoutMs ? setTimeout(() => controller.abort(), timeoutMs) : null;
  let response;
  try {
    response = await fetch(path, {
      method,
      body,
      headers: { Accept: "application/json", ...authHeaders(), ...headers },
      signal: controller.signal,
      cache: "no-store",
      credentials: "same-origin",
    });
  } catch (err) {
    if (timer && !signal?.aborted && controller.signal.aborted) {
      throw new ApiError({ code: "client_timeout", message: `no answer within ${Math.round(timeoutMs / 1000)} s` });
    }
    throw networkError(err);
  } finally {
    if (timer) clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
  const text = await response.text();
  if (!response.ok) throw errorFromBody(response.status, text, response.headers.get("Retry-After"));
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError({ status: response.status, code: "bad_response", message: "the gateway sent something that is not JSON" });
  }
}

export function imageForm(field, files) {
  const form = new FormData();
  for (const file of files) form.append(field, file, file.name || "image");
  return form;
}

/**
 * POST /v1/jobs with the image as multipart. XMLHttpRequest rather than fetch: it reports upload
 * progress, which matters for large photos on a slow network.
 */
export function createJob(file, { includeFrame = true, views, onUpload, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const query = new URLSearchParams({ include_frame: String(includeFrame) });
    if (views) query.set("views", String(views));
    xhr.open("POST", `/v1/jobs?${query}`);
    xhr.setRequestHeader("Accept", "application/json");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.timeout = 5 * 60 * 1000;
    if (onUpload) {
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) onUpload(e.loaded, e.total);
      });
    }
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          reject(new ApiError({ status: xhr.status, code: "bad_response", message: "the gateway sent something that is not JSON" }));
        }
      } else {
        reject(errorFromBody(xhr.status, xhr.responseText, xhr.getResponseHeader("Retry-After")));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError({ code: "network_error", message: "the upload failed" })));
    xhr.addEventListener("timeout", () => reject(new ApiError({ code: "client_timeout", message: "the upload took too long" })));
    xhr.addEventListener("abort", () => reject(new ApiError({ code: "aborted", message: "cancelled" })));
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(imageForm("image", [file]));
  });
}

/**
 * Follow a job until done or failed. Uses the SSE stream (EventSource) and reports every event via
 * onEvent(name, data). Falls back to polling GET /v1/jobs/{id} when EventSource cannot be used (a
 * bearer token is needed: EventSource cannot send headers) or when the stream breaks for good.
 */
export function followJob(created, { onEvent = () => {}, signal } = {}) {
  return new Promise((resolve, reject) => {
    let finished = false;
    let source = null;
    let pollTimer = null;
    const watchdog = setTimeout(() => {
      finish(new ApiError({ code: "client_timeout", message: "no final answer from the gateway in 15 minutes" }));
    }, JOB_WATCHDOG_MS);

    function finish(error, result) {
      if (finished) return;
      finished = true;
      clearTimeout(watchdog);
      if (pollTimer) clearTimeout(pollTimer);
      if (source) source.close();
      if (error) reject(error);
      else resolve(result);
    }

    function handle(name, data) {
      if (finished) return;
      onEvent(name, data);
      if (name === "done") finish(null, data);
      else if (name === "failed") {
        const err = (data && data.error) || {};
        finish(new ApiError({ status: 0, code: err.code || "job_failed", message: err.message || "" }));
      }
    }

    async function poll() {
      if (finished) return;
      try {
        const status = await request(created.status_url, { signal, timeoutMs: 30000 });
        if (status.state === "transmitting") {
          handle("transmitting", { state: "transmitting", ...status.progress });
        } else if (status.state === "done") {
          handle("done", status.result);
        } else if (status.state === "failed") {
          handle("failed", { error: status.error });
        } else {
          handle(status.state, { state: status.state });
        }
      } catch (err) {
        if (err.code === "aborted") return;
        // One transient failure is not the end of the job; a missing job is.
        if (err.status === 404 || err.status === 401) return finish(err);
      }
      if (!finished) pollTimer = setTimeout(poll, POLL_MS);
    }

    signal?.addEventListener("abort", () => finish(new ApiError({ code: "aborted", message: "cancelled" })), { once: true });

    if (getToken() || memoryToken || typeof EventSource === "undefined") {
      poll();
      return;
    }
    source = new EventSource(created.events_url);
    for (const name of ["queued", "transmitting", "computing", "done", "failed"]) {
      source.addEventListener(name, (e) => {
        let data = {};
        try {
          data = JSON.parse(e.data);
        } catch {
          return;
        }
        handle(name, data);
      });
    }
    source.addEventListener("error", () => {
      // CONNECTING means the browser is already reconnecting (with Last-Event-ID, so nothing is lost).
      if (!finished && source.readyState === EventSource.CLOSED) {
        source = null;
        poll();
      }
    });
  });
}

export function cancelJob(created) {
  return request(created.status_url, { method: "DELETE", timeoutMs: 10000 }).catch(() => null);
}

/** POST /v1/detect (synchronous): used by the camera, where each frame is small and quick. */
export function detect(blob, { includeFrame = false, signal, timeoutS } = {}) {
  const query = new URLSearchParams({ include_frame: String(includeFrame) });
  if (timeoutS) query.set("timeout_s", String(timeoutS));
  return request(`/v1/detect?${query}`, {
    method: "POST",
    body: imageForm("image", [blob]),
    signal,
    timeoutMs: ((timeoutS || 120) + 60) * 1000,
  });
}
