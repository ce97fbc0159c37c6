"""Request and response models of the HTTP API (they are the OpenAPI schema; docs/api.md explains them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors ---------------------------------------------------------------------------------------


class ErrorBody(_Model):
    code: str = Field(description="stable machine-readable code, e.g. `queue_full`")
    message: str = Field(description="human-readable explanation")


class ErrorResponse(_Model):
    error: ErrorBody


# --- detect ---------------------------------------------------------------------------------------


class Box(_Model):
    x: float = Field(description="left edge, pixels")
    y: float = Field(description="top edge, pixels")
    w: float = Field(description="width, pixels")
    h: float = Field(description="height, pixels")
    score: float = Field(description="face probability, 0..1")


class ImageInfo(_Model):
    width: int = Field(description="width after EXIF orientation: the coordinate space of `boxes`")
    height: int
    format: str = Field(description="decoded file format (JPEG, PNG, WEBP, BMP, GIF, TIFF)")
    mode: str = Field(description="Pillow mode of the file before conversion to 8-bit mono")
    frames: int = Field(description="frames in the file; only the first is used")
    exif_orientation: int = Field(description="EXIF orientation tag (1 = none), already applied")


class LetterboxInfo(_Model):
    frame_width: int
    frame_height: int
    scaled_width: int = Field(description="size of the image inside the frame")
    scaled_height: int
    pad_x: int = Field(description="left border (black) in frame pixels")
    pad_y: int
    scale_x: float = Field(description="frame pixels per original pixel")
    scale_y: float


class DeviceIdentity(_Model):
    url: str
    board: str
    firmware_version: str
    model_id: str
    model_hash: str
    protocol_version: int


class DeviceTimings(_Model):
    tick_unit: str = Field(description="what a tick is on this board: cycles, instructions (QEMU) or ns (host)")
    clock_hz: int | None = Field(description="ticks per second on the target; null when unknown")
    ticks_receive: int = Field(description="from the DETECT request to the last image row received")
    ticks_compute: int = Field(description="ticks spent computing (overlaps the transfer: rows stream in)")
    ticks_total: int
    seconds_receive: float | None = Field(description="ticks_receive / clock_hz")
    seconds_compute: float | None
    seconds_total: float | None
    stage_ticks: dict[str, int] = Field(description="ticks per model stage, when the device reports them")


class DeviceMemory(_Model):
    peak_ram_bytes: int = Field(description="peak RAM in use during the request (static + heap-like buffers + stack)")
    stack_high_water_bytes: int
    ram_bytes: int | None = Field(description="RAM the firmware may use on this board")


class LatencyBreakdown(_Model):
    decode_s: float = Field(description="upload decode, validation and letterbox on the gateway")
    queue_wait_s: float = Field(description="waiting for an idle device")
    transfer_s: float = Field(description="streaming the frame to the device (until the last byte is acknowledged)")
    device_compute_s: float = Field(description="from the last byte sent until the result arrived")
    total_s: float = Field(description="request received to response ready")


class FrameView(_Model):
    """What the device saw: the letterboxed frame and the boxes in its coordinates."""

    width: int
    height: int
    png_base64: str = Field(description="the 8-bit mono frame as a base64 PNG")
    boxes: list[Box]


class DetectResponse(_Model):
    request_id: str
    boxes: list[Box] = Field(description="faces in original image pixels (after EXIF orientation)")
    image: ImageInfo
    letterbox: LetterboxInfo
    device: DeviceIdentity
    timings: DeviceTimings
    memory: DeviceMemory
    latency: LatencyBreakdown
    views: int = Field(
        description="device passes fused into `boxes` (2: the frame and its shifted mirror); timings and latency "
        "cover all of them"
    )
    frame: FrameView | None = Field(default=None, description="present with include_frame=true")


# --- jobs -----------------------------------------------------------------------------------------

JobStateName = Literal["queued", "transmitting", "computing", "done", "failed"]


class JobCreated(_Model):
    id: str
    state: JobStateName
    status_url: str
    events_url: str


class JobProgress(_Model):
    bytes_sent: int = 0
    bytes_total: int = 0


class JobStatus(_Model):
    id: str
    state: JobStateName
    created_at: float = Field(description="Unix time")
    updated_at: float
    expires_at: float | None = Field(description="Unix time after which the job is forgotten (set once finished)")
    progress: JobProgress
    result: DetectResponse | None = None
    error: ErrorBody | None = None


# --- devices --------------------------------------------------------------------------------------

DeviceStateName = Literal["ready", "busy", "offline", "quarantined"]


class LinkStatistics(_Model):
    bytes_tx: int = 0
    bytes_rx: int = 0
    frames_tx: int = 0
    frames_rx: int = 0
    crc_errors: int = 0
    naks: int = 0
    retransmits: int = 0
    resyncs: int = 0
    timeouts: int = 0
    device_resets: int = 0
    mtu: int = 0  # current fragment payload size (a gauge; 0 while not connected)


class DeviceStatus(_Model):
    url: str
    state: DeviceStateName
    board: str | None = None
    firmware_version: str | None = None
    model_id: str | None = None
    model_hash: str | None = None
    protocol_version: int | None = None
    input_width: int | None = None
    input_height: int | None = None
    clock_hz: int | None = None
    tick_unit: str | None = None
    ram_bytes: int | None = None
    max_baud: int | None = None
    baud: int | None = None
    connected_since: float | None = Field(default=None, description="Unix time of the last successful handshake")
    last_error: str | None = None
    requests_ok: int = 0
    requests_failed: int = 0
    requests_cancelled: int = Field(default=0, description="stopped because the client went away or cancelled")
    reconnects: int = 0
    link: LinkStatistics


class DevicesResponse(_Model):
    devices: list[DeviceStatus]
    queue_depth: int
    queue_capacity: int


# --- health ---------------------------------------------------------------------------------------


class HealthResponse(_Model):
    status: Literal["ok"] = "ok"
    version: str


class ReadyResponse(_Model):
    ready: bool
    devices_ready: int
    devices_total: int
    detail: str


# --- benchmark ------------------------------------------------------------------------------------


class Summary(_Model):
    count: int
    min: float
    median: float
    p95: float
    max: float
    mean: float


class BenchmarkSample(_Model):
    index: int
    image: str
    width: int
    height: int
    end_to_end_s: float = Field(description="submit to result, excluding decode (the frame is prepared beforehand)")
    queue_wait_s: float
    transfer_s: float
    device_compute_s: float
    device_seconds_total: float | None = Field(description="ticks_total / clock_hz, measured by the device")
    ticks_receive: int
    ticks_compute: int
    ticks_total: int
    peak_ram_bytes: int
    stack_high_water_bytes: int
    boxes: int
    stage_ticks: dict[str, int] = Field(default_factory=dict, description="device ticks per model stage")


class BenchmarkImage(_Model):
    name: str
    width: int
    height: int
    frame_sha256: str = Field(description="SHA-256 of the 320x320 frame sent to the device")


class BenchmarkDevice(_Model):
    url: str
    board: str
    firmware_version: str
    model_id: str
    model_hash: str
    protocol_version: int
    clock_hz: int | None
    tick_unit: str
    baud: int | None
    ram_bytes: int | None


class BenchmarkReport(_Model):
    schema_version: Literal[1] = 1
    created_at: str = Field(description="UTC, ISO 8601")
    gateway_version: str
    host: dict[str, str] = Field(description="Python version and platform of the gateway")
    device: BenchmarkDevice
    image_source: Literal["synthetic", "uploaded"]
    seed: int | None
    images: list[BenchmarkImage]
    n: int
    warmup: int
    views: int = Field(description="device passes fused per detection, as in /v1/detect")
    samples: list[BenchmarkSample]
    summary: dict[str, Summary] = Field(
        description="end_to_end_s, transfer_s, device_compute_s, device_seconds_total over the measured samples"
    )
    peak_ram_bytes: int
    stack_high_water_bytes: int
