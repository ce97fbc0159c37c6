"""HTTP API (FastAPI): detection, jobs with server-sent progress, devices, benchmark, health, metrics.

`create_app(settings)` builds an app that owns a `DevicePool` for `settings.devices` (or uses the pool
it is given). docs/api.md is the user's guide; the OpenAPI schema at /openapi.json is the contract.

Request bodies are read by hand rather than through FastAPI's `UploadFile` parameters: the upload
limit must be enforced while reading (a 60 MB body is cut off at the limit, not spooled to disk
first), and both multipart uploads and raw image bodies are accepted on the same route.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import bench, schemas
from gateway.errors import (
    ClientGoneError,
    DeadlineExceededError,
    GatewayError,
    InvalidImageError,
    InvalidParametersError,
    NoDeviceReadyError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from gateway.jobs import Job, JobStore
from gateway.metrics import GatewayMetrics
from gateway.pool import DeviceIdentity, DevicePool, DeviceState, Outcome, error_from_exception, tick_unit_name
from gateway.settings import Settings, gateway_version
from gateway.validation import DecodedUpload, UploadLimits, classify_content_type, decode_upload, read_bounded
from gateway.views import MAX_VIEWS

log = logging.getLogger("gateway.api")

T = TypeVar("T")

# Room for multipart boundaries and part headers on top of the image itself.
_MULTIPART_OVERHEAD = 64 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Decoding is CPU-bound and memory-hungry: a few at a time, however many uploads arrive at once.
_DECODE_CONCURRENCY = 2
_DISCONNECT_POLL_S = 0.25
# Past the request's own deadline, how long to wait for the device worker to report before giving up.
_DEADLINE_GRACE_S = 30.0


def _error_doc(description: str) -> dict[str, Any]:
    return {"model": schemas.ErrorResponse, "description": description}


COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error_doc("missing or wrong bearer token (only when the gateway has one)"),
    422: _error_doc("bad parameters, or an image the device cannot use (corrupt, 0x0, absurd aspect ratio)"),
}
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **COMMON_ERRORS,
    413: _error_doc("upload larger than the byte limit, or image with too many pixels"),
    415: _error_doc("not an image in an accepted format, or a content type that cannot carry one"),
    429: _error_doc("queue full; see Retry-After"),
    503: _error_doc("no device is ready"),
    504: _error_doc("the device missed the request's deadline"),
    502: _error_doc("the device failed or rejected the request"),
}

_IMAGE_SCHEMA = {"type": "string", "format": "binary"}
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The image: a multipart form with an `image` file field, or the raw file as the body. "
        "JPEG, PNG, WebP, BMP, GIF (first frame), TIFF.",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["image"], "properties": {"image": _IMAGE_SCHEMA}}
            },
            "image/*": {"schema": _IMAGE_SCHEMA},
            "application/octet-stream": {"schema": _IMAGE_SCHEMA},
        },
    }
}
BENCHMARK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "Optional images (repeat the `images` field); without them a built-in synthetic set is used.",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"images": {"type": "array", "items": _IMAGE_SCHEMA}}}
            }
        },
    }
}


@dataclass
class GatewayState:
    settings: Settings
    metrics: GatewayMetrics
    jobs: JobStore
    pool: DevicePool | None
    owns_pool: bool
    decode_limiter: anyio.CapacityLimiter | None = None

    @property
    def limits(self) -> UploadLimits:
        s = self.settings
        return UploadLimits(max_bytes=s.max_upload_bytes, max_pixels=s.max_pixels, max_aspect_ratio=s.max_aspect_ratio)

    def require_pool(self) -> DevicePool:
        if self.pool is None:
            raise NoDeviceReadyError("the gateway is starting")
        return self.pool


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


# --------------------------------------------------------------------------------------------------
# Auth

_bearer = HTTPBearer(auto_error=False, description="Only when the gateway was started with a token")


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    token = _state(request).settings.token
    if not token:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise UnauthorizedError("missing or wrong bearer token", headers={"WWW-Authenticate": 'Bearer realm="rnnpool"'})


# --------------------------------------------------------------------------------------------------
# Uploads


async def _read_body(request: Request, limit: int) -> bytes:
    return await read_bounded(request.stream(), limit, request.headers.get("content-length"))


async def _parse_multipart(request: Request, body: bytes, field: str, *, many: bool) -> list[tuple[str, bytes]]:
    """Parse an already bounded multipart body; returns (filename, bytes) for each `field` part."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    try:
        form = await Request(request.scope, replay).form(max_files=1000 if many else 8, max_fields=64)
    except Exception as exc:
        raise InvalidParametersError(f"malformed multipart body: {exc}", code="bad_multipart") from exc
    try:
        parts = form.getlist(field)
        out = []
        for part in parts:
            if not isinstance(part, UploadFile):
                raise InvalidParametersError(f"form field {field!r} must be a file", code="bad_multipart")
            out.append((part.filename or field, await part.read()))
        return out
    finally:
        await form.close()


async def read_image_upload(request: Request, max_bytes: int) -> bytes:
    kind = classify_content_type(request.headers.get("content-type"))
    if kind == "raw":
        return await _read_body(request, max_bytes)
    try:
        body = await _read_body(request, max_bytes + _MULTIPART_OVERHEAD)
    except PayloadTooLargeError as exc:
        # Report the image limit the client can act on, not the internal one with multipart slack.
        raise PayloadTooLargeError(f"upload is larger than the limit of {max_bytes} bytes", code=exc.code) from exc
    parts = await _parse_multipart(request, body, "image", many=False)
    if not parts:
        raise InvalidParametersError("multipart body has no 'image' file field", code="missing_image")
    if len(parts) > 1:
        raise InvalidParametersError(
            "send one 'image' per request (use /v1/benchmark for several)", code="bad_multipart"
        )
    data = parts[0][1]
    if len(data) > max_bytes:
        raise PayloadTooLargeError(f"image is {len(data)} bytes; the limit is {max_bytes}", code="upload_too_large")
    return data


async def decode(state: GatewayState, data: bytes, frame_size: tuple[int, int]) -> DecodedUpload:
    limiter = state.decode_limiter
    return await anyio.to_thread.run_sync(decode_upload, data, state.limits, *frame_size, limiter=limiter)


# --------------------------------------------------------------------------------------------------
# Running a detection


async def await_unless_disconnected(request: Request, awaitable: Awaitable[T], timeout_s: float) -> T:
    """Await `awaitable`, cancelling it when the client disconnects or `timeout_s` passes."""
    task = asyncio.ensure_future(awaitable)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceededError("no answer from the device worker in time")
            done, _ = await asyncio.wait({task}, timeout=min(_DISCONNECT_POLL_S, left))
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGoneError("the client disconnected")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _frame_png(frame: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _stage_ticks(value: Any) -> dict[str, int]:
    if not value:
        return {}
    if isinstance(value, dict):
        return {str(k): int(v) for k, v in value.items()}
    out: dict[str, int] = {}
    for item in value:
        name, ticks = item if isinstance(item, tuple | list) else (getattr(item, "name", "?"), item.ticks)
        out[str(name)] = int(ticks)
    return out


def device_identity(identity: DeviceIdentity) -> schemas.DeviceIdentity:
    return schemas.DeviceIdentity(
        url=identity.url,
        board=identity.board,
        firmware_version=identity.firmware_version,
        model_id=identity.model_id,
        model_hash=identity.model_hash,
        protocol_version=identity.protocol_version,
    )


def device_boxes(result: Any) -> np.ndarray:
    """(N, 5) x, y, w, h, score of a DetectResult, in device-frame pixels."""
    rows = [[float(b.x), float(b.y), float(b.w), float(b.h), float(b.score)] for b in result.boxes]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def build_detect_response(
    request_id: str,
    decoded: DecodedUpload,
    outcome: Outcome,
    *,
    include_frame: bool,
    total_s: float,
) -> schemas.DetectResponse:
    result = outcome.result
    plan = decoded.plan
    frame_boxes = device_boxes(result)
    mapped = plan.to_source(frame_boxes[:, :4])
    boxes = [
        schemas.Box(x=float(b[0]), y=float(b[1]), w=float(b[2]), h=float(b[3]), score=float(s))
        for b, s in zip(mapped, frame_boxes[:, 4], strict=True)
    ]
    clock = outcome.device.clock_hz

    def seconds(ticks: int) -> float | None:
        return ticks / clock if clock else None

    ticks_receive, ticks_compute, ticks_total = (
        int(result.ticks_receive),
        int(result.ticks_compute),
        int(result.ticks_total),
    )
    frame = None
    if include_frame:
        frame = schemas.FrameView(
            width=plan.dst_w,
            height=plan.dst_h,
            png_base64=_frame_png(decoded.frame),
            boxes=[schemas.Box(x=b[0], y=b[1], w=b[2], h=b[3], score=b[4]) for b in frame_boxes.tolist()],
        )
    return schemas.DetectResponse(
        request_id=request_id,
        boxes=boxes,
        image=schemas.ImageInfo(
            width=decoded.width,
            height=decoded.height,
            format=decoded.format,
            mode=decoded.mode,
            frames=decoded.n_frames,
            exif_orientation=decoded.exif_orientation,
        ),
        letterbox=schemas.LetterboxInfo(
            frame_width=plan.dst_w,
            frame_height=plan.dst_h,
            scaled_width=plan.scaled_w,
            scaled_height=plan.scaled_h,
            pad_x=plan.pad_x,
            pad_y=plan.pad_y,
            scale_x=plan.scale_x,
            scale_y=plan.scale_y,
        ),
        device=device_identity(outcome.device),
        timings=schemas.DeviceTimings(
            tick_unit=tick_unit_name(getattr(result, "tick_unit", outcome.device.tick_unit)),
            clock_hz=clock,
            ticks_receive=ticks_receive,
            ticks_compute=ticks_compute,
            ticks_total=ticks_total,
            seconds_receive=seconds(ticks_receive),
            seconds_compute=seconds(ticks_compute),
            seconds_total=seconds(ticks_total),
            stage_ticks=_stage_ticks(getattr(result, "stage_ticks", None)),
        ),
        memory=schemas.DeviceMemory(
            peak_ram_bytes=int(result.peak_ram_bytes),
            stack_high_water_bytes=int(result.stack_high_water_bytes),
            ram_bytes=outcome.device.ram_bytes,
        ),
        latency=schemas.LatencyBreakdown(
            decode_s=decoded.decode_s,
            queue_wait_s=outcome.queue_wait_s,
            transfer_s=outcome.transfer_s,
            device_compute_s=outcome.compute_s,
            total_s=total_s,
        ),
        views=outcome.views,
        frame=frame,
    )


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def _timeout(state: GatewayState, timeout_s: float | None) -> float:
    return timeout_s if timeout_s is not None else state.settings.request_timeout_s


@dataclass(frozen=True)
class AcceptedUpload:
    """An upload read, decoded and given its deadline: what /v1/detect and /v1/jobs both start from."""

    request_id: str
    received: float  # perf_counter() when the request arrived, for the end-to-end latency
    pool: DevicePool
    decoded: DecodedUpload
    deadline_s: float

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.received


async def accept_upload(request: Request, state: GatewayState, timeout_s: float | None) -> AcceptedUpload:
    received = time.perf_counter()
    request_id = _request_id(request)
    data = await read_image_upload(request, state.settings.max_upload_bytes)
    pool = state.require_pool()
    decoded = await decode(state, data, pool.frame_size())
    return AcceptedUpload(request_id, received, pool, decoded, _timeout(state, timeout_s))


TimeoutQuery = Annotated[
    float | None,
    Query(gt=0, le=3600, description="deadline for the device work in seconds (default: the gateway's setting)"),
]
IncludeFrameQuery = Annotated[
    bool, Query(description="also return the 320x320 letterboxed frame (base64 PNG) and boxes in its coordinates")
]
DeviceQuery = Annotated[str | None, Query(description="run on this device (its URL as listed by /v1/devices)")]
ViewsQuery = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_VIEWS,
        description="device passes fused per image: 2 = the frame and its shifted mirror (more accurate), "
        "1 = half the device time (default: the gateway's setting, 2 unless configured)",
    ),
]


# --------------------------------------------------------------------------------------------------
# Routes

v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])


@v1.post(
    "/detect",
    response_model=schemas.DetectResponse,
    responses=UPLOAD_ERRORS,
    openapi_extra=UPLOAD_BODY,
    summary="Detect faces in one image",
)
async def detect(
    request: Request,
    include_frame: IncludeFrameQuery = False,
    timeout_s: TimeoutQuery = None,
    device: DeviceQuery = None,
    views: ViewsQuery = None,
) -> schemas.DetectResponse:
    state = _state(request)
    upload = await accept_upload(request, state, timeout_s)
    work = upload.pool.detect(
        upload.decoded.frame, timeout_s=upload.deadline_s, device=device, views=views or state.settings.views
    )
    outcome = await await_unless_disconnected(request, work, upload.deadline_s + _DEADLINE_GRACE_S)
    response = build_detect_response(
        upload.request_id, upload.decoded, outcome, include_frame=include_frame, total_s=upload.elapsed_s()
    )
    state.metrics.observe_detect(response.latency.model_dump())
    return response


@v1.post(
    "/jobs",
    status_code=202,
    response_model=schemas.JobCreated,
    responses=UPLOAD_ERRORS,
    openapi_extra=UPLOAD_BODY,
    summary="Start a detection job; follow it at /v1/jobs/{id}/events",
)
async def create_job(
    request: Request,
    include_frame: IncludeFrameQuery = False,
    timeout_s: TimeoutQuery = None,
    device: DeviceQuery = None,
    views: ViewsQuery = None,
) -> JSONResponse:
    state = _state(request)
    upload = await accept_upload(request, state, timeout_s)
    # Submitting before answering 202 means a full queue or no device is reported now (429/503),
    # not discovered later by polling. Progress can start before the job record exists, so the
    # first events are held and replayed in order once it does.
    early: list[tuple[str, dict[str, Any]]] = []
    holder: dict[str, Job] = {}
    lock = threading.Lock()

    def progress(stage: str, info: dict[str, Any]) -> None:
        with lock:
            job = holder.get("job")
            if job is None:
                early.append((stage, dict(info)))
                return
        state.jobs.progress_callback(job)(stage, info)

    future, cancel = upload.pool.submit(
        upload.decoded.frame,
        timeout_s=upload.deadline_s,
        progress=progress,
        device=device,
        views=views or state.settings.views,
    )

    async def run(job: Job) -> dict[str, Any]:
        try:
            outcome = await asyncio.wait_for(asyncio.wrap_future(future), upload.deadline_s + _DEADLINE_GRACE_S)
        except TimeoutError as exc:
            cancel.set()
            raise DeadlineExceededError("no answer from the device worker in time") from exc
        except GatewayError:
            raise
        except Exception as exc:
            raise error_from_exception(exc) from exc
        response = build_detect_response(
            upload.request_id, upload.decoded, outcome, include_frame=include_frame, total_s=upload.elapsed_s()
        )
        state.metrics.observe_detect(response.latency.model_dump())
        return response.model_dump(mode="json")

    try:
        job = state.jobs.create(run)
    except GatewayError:
        cancel.set()
        raise
    job.cancel = cancel.set
    with lock:
        holder["job"] = job
        replay, early[:] = list(early), []
    for stage, info in replay:
        state.jobs.record_progress(job, stage, info)
    body = schemas.JobCreated(
        id=job.id, state="queued", status_url=f"/v1/jobs/{job.id}", events_url=f"/v1/jobs/{job.id}/events"
    )
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": body.status_url})


def _job_status(job: Job) -> schemas.JobStatus:
    return schemas.JobStatus.model_validate(
        {
            "id": job.id,
            "state": job.state,
            "created_at": job.created_at,
            "updated_at": job.updated_at,
            "expires_at": job.expires_at,
            "progress": {"bytes_sent": job.bytes_sent, "bytes_total": job.bytes_total},
            "result": job.result,
            "error": job.error,
        }
    )


@v1.get("/jobs/{job_id}", response_model=schemas.JobStatus, responses={**COMMON_ERRORS, 404: _error_doc("no such job")})
async def get_job(request: Request, job_id: str) -> schemas.JobStatus:
    return _job_status(_state(request).jobs.get(job_id))


@v1.delete(
    "/jobs/{job_id}",
    response_model=schemas.JobStatus,
    responses={**COMMON_ERRORS, 404: _error_doc("no such job")},
    summary="Cancel a job (the device stops at the next frame boundary)",
)
async def cancel_job(request: Request, job_id: str) -> schemas.JobStatus:
    jobs = _state(request).jobs
    job = jobs.get(job_id)
    if not job.finished:
        if job.cancel is not None:
            job.cancel()
        jobs.fail(job, "cancelled", "the job was cancelled by the client")
    return _job_status(job)


@v1.get(
    "/jobs/{job_id}/events",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "server-sent events until done or failed"},
        **COMMON_ERRORS,
        404: _error_doc("no such job"),
    },
    response_class=StreamingResponse,
    summary="Follow a job: queued -> transmitting -> computing -> done | failed",
)
async def job_events(request: Request, job_id: str) -> StreamingResponse:
    state = _state(request)
    job = state.jobs.get(job_id)
    try:
        after = max(0, int(request.headers.get("last-event-id", "0")))
    except ValueError:
        after = 0
    limit = state.settings.request_timeout_s + state.settings.job_ttl_s

    async def stream() -> AsyncIterator[str]:
        async for chunk in state.jobs.follow(job, after=after, max_s=limit):
            yield chunk

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _device_status(snap: Any) -> schemas.DeviceStatus:
    ident: DeviceIdentity | None = snap.identity
    fields: dict[str, Any] = {}
    if ident is not None:
        fields = {
            "board": ident.board,
            "firmware_version": ident.firmware_version,
            "model_id": ident.model_id,
            "model_hash": ident.model_hash,
            "protocol_version": ident.protocol_version,
            "input_width": ident.input_width,
            "input_height": ident.input_height,
            "clock_hz": ident.clock_hz,
            "tick_unit": tick_unit_name(ident.tick_unit),
            "ram_bytes": ident.ram_bytes,
            "max_baud": ident.max_baud,
            "baud": ident.baud,
        }
    return schemas.DeviceStatus(
        url=snap.url,
        state=snap.state.value,
        connected_since=snap.connected_since if snap.state in (DeviceState.READY, DeviceState.BUSY) else None,
        last_error=snap.last_error,
        requests_ok=snap.requests_ok,
        requests_failed=snap.requests_failed,
        requests_cancelled=snap.requests_cancelled,
        reconnects=snap.reconnects,
        link=schemas.LinkStatistics(**snap.link),
        **fields,
    )


@v1.get("/devices", response_model=schemas.DevicesResponse, responses=COMMON_ERRORS, summary="Devices and their state")
async def devices(request: Request) -> schemas.DevicesResponse:
    pool = _state(request).pool
    if pool is None:
        return schemas.DevicesResponse(devices=[], queue_depth=0, queue_capacity=0)
    return schemas.DevicesResponse(
        devices=[_device_status(s) for s in pool.snapshots()],
        queue_depth=pool.queue_depth,
        queue_capacity=pool.queue_capacity,
    )


@v1.post(
    "/benchmark",
    response_model=schemas.BenchmarkReport,
    responses=UPLOAD_ERRORS,
    openapi_extra=BENCHMARK_BODY,
    summary="Time N detections on one device",
)
async def benchmark(
    request: Request,
    n: Annotated[int, Query(ge=1, description="measured runs (cycling through the images)")] = 5,
    warmup: Annotated[int, Query(ge=0, le=20, description="unrecorded runs first")] = 1,
    seed: Annotated[int, Query(ge=0, description="seed of the synthetic image set")] = 0,
    count: Annotated[int, Query(ge=1, le=64, description="synthetic images to generate")] = 8,
    timeout_s: TimeoutQuery = None,
    device: DeviceQuery = None,
    views: ViewsQuery = None,
) -> schemas.BenchmarkReport:
    state = _state(request)
    settings = state.settings
    if n + warmup > settings.benchmark_max_images:
        raise InvalidParametersError(
            f"n + warmup = {n + warmup} exceeds the limit of {settings.benchmark_max_images}", code="too_many_runs"
        )
    named: list[tuple[str, bytes]] = []
    content_type = request.headers.get("content-type")
    if content_type and content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        limit = settings.max_upload_bytes * 4 + _MULTIPART_OVERHEAD
        body = await _read_body(request, limit)
        named = await _parse_multipart(request, body, "images", many=True)
    elif int(request.headers.get("content-length", "0") or 0) > 0:
        raise UnsupportedMediaTypeError(
            "send benchmark images as multipart/form-data 'images' fields", code="unsupported_content_type"
        )
    pool = state.require_pool()
    frame_size = pool.frame_size()
    if named:
        images = await anyio.to_thread.run_sync(bench.prepare_images, named, state.limits, frame_size)
        source, used_seed = "uploaded", None
    else:
        generated = await anyio.to_thread.run_sync(bench.synthetic_images, count, seed)
        images = await anyio.to_thread.run_sync(bench.prepare_images, generated, state.limits, frame_size)
        source, used_seed = "synthetic", seed
    per_image = _timeout(state, timeout_s)
    report = await await_unless_disconnected(
        request,
        bench.run_benchmark(
            pool,
            images,
            n=n,
            warmup=warmup,
            image_source=source,
            seed=used_seed,
            device=device,
            timeout_s=per_image,
            views=views or settings.views,
        ),
        (per_image + _DEADLINE_GRACE_S) * (n + warmup),
    )
    return report


ops = APIRouter()


@ops.get("/healthz", response_model=schemas.HealthResponse, summary="Liveness: the process answers")
async def healthz() -> schemas.HealthResponse:
    return schemas.HealthResponse(version=gateway_version())


@ops.get(
    "/readyz",
    response_model=schemas.ReadyResponse,
    responses={503: {"model": schemas.ReadyResponse, "description": "no device has completed its handshake"}},
    summary="Readiness: at least one device is handshaken",
)
async def readyz(request: Request) -> JSONResponse:
    pool = _state(request).pool
    total = len(pool.workers) if pool is not None else 0
    ready = pool.devices_ready() if pool is not None else 0
    if ready:
        detail = f"{ready} of {total} devices ready"
    elif pool is not None and pool.workers:
        detail = "; ".join(f"{s.url}: {s.state.value}" + (f" ({s.last_error})" if s.last_error else "")
                           for s in pool.snapshots())  # fmt: skip
    else:
        detail = "; ".join(pool.start_errors) if pool is not None and pool.start_errors else "no devices configured"
    body = schemas.ReadyResponse(ready=ready > 0, devices_ready=ready, devices_total=total, detail=detail)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@ops.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    return Response(_state(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


# --------------------------------------------------------------------------------------------------
# Errors and middleware


def _error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = schemas.ErrorResponse(error=schemas.ErrorBody(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def _install_error_handlers(app: FastAPI, metrics: GatewayMetrics) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        metrics.errors.labels(exc.code).inc()
        if isinstance(exc, InvalidImageError | PayloadTooLargeError | UnsupportedMediaTypeError):
            metrics.rejected_uploads.labels(exc.code).inc()
        return _error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p not in ('query', 'path', 'body'))}: {err.get('msg')}"
            for err in exc.errors()
        )
        metrics.errors.labels("invalid_parameters").inc()
        return _error_response(422, "invalid_parameters", problems or "invalid parameters")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return _error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        metrics.errors.labels("internal_error").inc()
        return _error_response(500, "internal_error", f"internal error: {type(exc).__name__}")


class MetricsMiddleware:
    """Counts and times every request, labelled by route template (never the raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or ("static" if status[0] < 400 else "unmatched")
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, label, str(status[0])).inc()
            self.metrics.request_seconds.labels(method, label).observe(time.perf_counter() - started)


# --------------------------------------------------------------------------------------------------
# The app


def create_app(settings: Settings | None = None, *, pool: DevicePool | None = None) -> FastAPI:
    """The gateway app. Without `pool`, it starts (and on shutdown stops) a pool over `settings.devices`."""
    settings = settings or Settings()
    metrics = GatewayMetrics()
    state = GatewayState(
        settings=settings,
        metrics=metrics,
        jobs=JobStore(settings.max_jobs, settings.job_ttl_s),
        pool=pool,
        owns_pool=pool is None,
    )
    metrics.pool = pool
    metrics.job_counts = state.jobs.counts

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.jobs.bind(asyncio.get_running_loop())
        state.decode_limiter = anyio.CapacityLimiter(_DECODE_CONCURRENCY)
        if state.pool is None:
            new_pool = DevicePool(settings.devices, settings)
            # Starting simulated boards may build firmware: keep the loop free meanwhile.
            await anyio.to_thread.run_sync(new_pool.start)
            state.pool = new_pool
            metrics.pool = new_pool
        try:
            yield
        finally:
            await state.jobs.close()
            if state.owns_pool and state.pool is not None:
                await anyio.to_thread.run_sync(state.pool.close)

    app = FastAPI(
        title="rnnpool-gateway",
        version=gateway_version(),
        description="Face detection on an STM32F439 microcontroller running RNNPool-Face-M4. See docs/api.md.",
        lifespan=lifespan,
    )
    app.state.gateway = state
    _install_error_handlers(app, metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(ops)
    app.include_router(v1)
    _mount_web(app, settings)
    return app


def _mount_web(app: FastAPI, settings: Settings) -> None:
    web_dir = settings.web_dir
    index = web_dir / "index.html"

    @app.get("/", include_in_schema=False, response_model=None)
    async def root() -> Response:
        # Checked per request: the viewer may be added to web/ while the gateway runs.
        if index.is_file():
            return FileResponse(index)
        return JSONResponse({"service": "rnnpool-gateway", "docs": "/docs", "openapi": "/openapi.json"})

    if web_dir.is_dir():
        app.mount("/", StaticFiles(directory=web_dir, html=True), name="web")
