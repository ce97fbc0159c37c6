"""Benchmarks: run N frames through one device and report timings a person can keep.

Used by `POST /v1/benchmark` and `rnnpool bench`. Images are either uploaded or a deterministic
synthetic set (`synthetic_images(seed)`: textured backgrounds with face-like ovals at several sizes),
always passed through the same decode + letterbox path as a real upload, so the frames (and their
SHA-256 in the report) are exactly what a client's request would send. Requests run one at a time,
pinned to one device, so the figures describe that board and link alone.
"""

from __future__ import annotations

import hashlib
import io
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from gateway.errors import InvalidParametersError, NoDeviceReadyError
from gateway.pool import DevicePool, Outcome, tick_unit_name
from gateway.schemas import BenchmarkDevice, BenchmarkImage, BenchmarkReport, BenchmarkSample, Summary
from gateway.settings import gateway_version
from gateway.validation import UploadLimits, decode_upload

_SCENE_SIZES = ((640, 480), (480, 640), (800, 600), (320, 240), (1024, 576), (600, 600), (400, 300), (720, 960))


@dataclass(frozen=True)
class PreparedImage:
    name: str
    width: int
    height: int
    frame: np.ndarray

    @property
    def frame_sha256(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.frame).tobytes()).hexdigest()


def synthetic_scene(index: int, seed: int = 0) -> bytes:
    """A deterministic grey-level scene with a few face-like ovals, as PNG bytes."""
    rng = np.random.default_rng([seed, index])
    width, height = _SCENE_SIZES[index % len(_SCENE_SIZES)]
    yy, xx = np.mgrid[0:height, 0:width]
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * (xx / width - 0.5) + np.sin(angle) * (yy / height - 0.5)) * rng.uniform(40, 120)
    base = rng.uniform(60, 170) + gradient + rng.normal(0, rng.uniform(3, 15), (height, width))
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), mode="L")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 8))):  # clutter: rectangles of other tones
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(10, width // 3)), y0 + int(rng.integers(10, height // 3))
        draw.rectangle((x0, y0, x1, y1), fill=int(rng.integers(0, 256)))
    for _ in range(int(rng.integers(1, 6))):  # faces: oval, two eyes, a mouth
        side = int(rng.integers(max(12, min(width, height) // 16), max(13, min(width, height) // 3)))
        fw, fh = side, int(side * 1.3)
        cx, cy = int(rng.integers(fw // 2, width - fw // 2)), int(rng.integers(fh // 2, height - fh // 2))
        skin = int(rng.integers(140, 230))
        draw.ellipse((cx - fw // 2, cy - fh // 2, cx + fw // 2, cy + fh // 2), fill=skin)
        eye_r = max(1, fw // 10)
        for ex in (cx - fw // 5, cx + fw // 5):
            ey = cy - fh // 8
            draw.ellipse((ex - eye_r, ey - eye_r, ex + eye_r, ey + eye_r), fill=max(0, skin - 120))
        draw.line(
            (cx - fw // 6, cy + fh // 4, cx + fw // 6, cy + fh // 4), fill=max(0, skin - 90), width=max(1, fh // 20)
        )
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def synthetic_images(count: int = 8, seed: int = 0) -> list[tuple[str, bytes]]:
    return [(f"synthetic-{seed}-{i:02d}.png", synthetic_scene(i, seed)) for i in range(count)]


def prepare_images(
    named: Sequence[tuple[str, bytes]], limits: UploadLimits, frame_size: tuple[int, int] = (320, 320)
) -> list[PreparedImage]:
    """Validate and letterbox each image (raising the same client errors an upload would)."""
    out = []
    for name, data in named:
        decoded = decode_upload(data, limits, *frame_size)
        out.append(PreparedImage(name=name, width=decoded.width, height=decoded.height, frame=decoded.frame))
    return out


def summarize(values: Sequence[float]) -> Summary:
    arr = np.asarray(values, dtype=np.float64)
    return Summary(
        count=int(arr.size),
        min=float(arr.min()),
        median=float(np.median(arr)),
        p95=float(np.percentile(arr, 95)),
        max=float(arr.max()),
        mean=float(arr.mean()),
    )


def _sample(index: int, image: PreparedImage, outcome: Outcome, end_to_end_s: float) -> BenchmarkSample:
    result = outcome.result
    clock = outcome.device.clock_hz
    ticks_total = int(result.ticks_total)
    return BenchmarkSample(
        index=index,
        image=image.name,
        width=image.width,
        height=image.height,
        end_to_end_s=end_to_end_s,
        queue_wait_s=outcome.queue_wait_s,
        transfer_s=outcome.transfer_s,
        device_compute_s=outcome.compute_s,
        device_seconds_total=ticks_total / clock if clock else None,
        ticks_receive=int(result.ticks_receive),
        ticks_compute=int(result.ticks_compute),
        ticks_total=ticks_total,
        peak_ram_bytes=int(result.peak_ram_bytes),
        stack_high_water_bytes=int(result.stack_high_water_bytes),
        boxes=len(result.boxes),
        stage_ticks={str(k): int(v) for k, v in (getattr(result, "stage_ticks", None) or {}).items()},
    )


async def run_benchmark(
    pool: DevicePool,
    images: Sequence[PreparedImage],
    *,
    n: int,
    warmup: int,
    image_source: str,
    seed: int | None,
    device: str | None = None,
    timeout_s: float | None = None,
    views: int = 1,
) -> BenchmarkReport:
    """Run `warmup` unrecorded then `n` recorded detections, cycling through `images`, one at a time."""
    if not images:
        raise InvalidParametersError("a benchmark needs at least one image")
    if n < 1 or warmup < 0:
        raise InvalidParametersError("n must be >= 1 and warmup >= 0")
    if device is None:
        ready = [s.url for s in pool.snapshots() if s.identity is not None and s.state.value in ("ready", "busy")]
        if not ready:
            raise NoDeviceReadyError("no device is ready to benchmark")
        device = ready[0]

    samples: list[BenchmarkSample] = []
    identity = None
    for i in range(warmup + n):
        image = images[i % len(images)]
        started = time.perf_counter()
        outcome = await pool.detect(image.frame, timeout_s=timeout_s, device=device, views=views)
        elapsed = time.perf_counter() - started
        identity = outcome.device
        if i >= warmup:
            samples.append(_sample(i - warmup, image, outcome, elapsed))
    assert identity is not None

    summary = {
        "end_to_end_s": summarize([s.end_to_end_s for s in samples]),
        "transfer_s": summarize([s.transfer_s for s in samples]),
        "device_compute_s": summarize([s.device_compute_s for s in samples]),
    }
    device_seconds = [s.device_seconds_total for s in samples if s.device_seconds_total is not None]
    if device_seconds:
        summary["device_seconds_total"] = summarize(device_seconds)
    used = images[: min(len(images), warmup + n)]
    return BenchmarkReport(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        gateway_version=gateway_version(),
        host={"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine()},
        device=BenchmarkDevice(
            url=identity.url,
            board=identity.board,
            firmware_version=identity.firmware_version,
            model_id=identity.model_id,
            model_hash=identity.model_hash,
            protocol_version=identity.protocol_version,
            clock_hz=identity.clock_hz,
            tick_unit=tick_unit_name(identity.tick_unit),
            baud=identity.baud,
            ram_bytes=identity.ram_bytes,
        ),
        image_source="synthetic" if image_source == "synthetic" else "uploaded",
        seed=seed,
        images=[
            BenchmarkImage(name=im.name, width=im.width, height=im.height, frame_sha256=im.frame_sha256) for im in used
        ],
        n=n,
        warmup=warmup,
        views=views,
        samples=samples,
        summary=summary,
        peak_ram_bytes=max(s.peak_ram_bytes for s in samples),
        stack_high_water_bytes=max(s.stack_high_water_bytes for s in samples),
    )
