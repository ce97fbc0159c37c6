"""`rnnpool detect`: run images through a device and print one JSON object per image and line.

    rnnpool detect --device sim|qemu|/dev/ttyACM0|socket://host:port [--views 1|2] [--json] IMAGE...

Each line: {"image", "width", "height", "boxes": [{"x", "y", "w", "h", "score"}], "device": {...},
"timing": {...}, "views": n} with boxes in the original image's pixels (after EXIF orientation).
By default each image is detected twice, on the frame and on its shifted mirror, and the boxes are
fused (gateway/views.py); `--views 1` is one pass, half the device time, lower accuracy. This output
shape is a stable interface (accuracy is measured through it); add keys, never rename or remove.
An image that cannot be processed gives a line with "boxes": [] and an "error" object, and the
command exits with status 1 after the remaining images.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from gateway.device import DetectResult, DeviceError, DeviceInfo, DeviceSession
from gateway.imaging import Letterbox, letterbox_bytes
from gateway.sim import resolved_url
from gateway.views import DEFAULT_VIEWS, MAX_VIEWS, detect_views

BOX_DECIMALS = 2
SCORE_DECIMALS = 5


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "detect",
        help="detect faces in image files; one JSON object per image on stdout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="sim", help="device URL, or sim (host firmware) / qemu (default sim)")
    p.add_argument("--json", action="store_true", help="JSON lines (the default and only format; kept for scripts)")
    p.add_argument("--baudrate", type=int, default=115200, help="UART rate the device boots at")
    p.add_argument("--target-baud", type=int, default=None, help="negotiate this UART rate after the handshake")
    p.add_argument(
        "--timeout", type=float, default=None, help="deadline per device pass in seconds (default: from the baud)"
    )
    p.add_argument(
        "--views",
        type=int,
        choices=range(1, MAX_VIEWS + 1),
        default=DEFAULT_VIEWS,
        help=f"device passes per image, fused (default {DEFAULT_VIEWS}: the frame and its shifted mirror)",
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")


def boxes_to_source(result: DetectResult, plan: Letterbox) -> list[dict[str, float]]:
    """Device-frame boxes -> original-image boxes, clipped; boxes wholly in the letterbox border vanish."""
    if not result.boxes:
        return []
    frame = np.array([[b.x, b.y, b.w, b.h] for b in result.boxes], dtype=np.float64)
    mapped = plan.to_source(frame)
    out = []
    for (x, y, w, h), box in zip(mapped, result.boxes, strict=True):
        if w <= 0 or h <= 0:
            continue
        out.append(
            {
                "x": round(float(x), BOX_DECIMALS),
                "y": round(float(y), BOX_DECIMALS),
                "w": round(float(w), BOX_DECIMALS),
                "h": round(float(h), BOX_DECIMALS),
                "score": round(float(box.score), SCORE_DECIMALS),
            }
        )
    return out


def device_report(info: DeviceInfo, result: DetectResult) -> dict[str, Any]:
    return {
        "board": info.board,
        "firmware_version": info.firmware_version,
        "model_hash": f"{info.model_hash:08x}",
        "tick_unit": result.tick_unit,
        "clock_hz": result.clock_hz or info.clock_hz,
        "ticks_receive": result.ticks_receive,
        "ticks_compute": result.ticks_compute,
        "ticks_total": result.ticks_total,
        "compute_seconds": result.seconds(result.ticks_compute),
        "peak_ram_bytes": result.peak_ram_bytes,
        "stack_high_water_bytes": result.stack_high_water_bytes,
    }


def detect_file(session: DeviceSession, path: Path, deadline_s: float | None, views: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    frame, plan = letterbox_bytes(path.read_bytes())
    t1 = time.perf_counter()
    result = detect_views(lambda view_frame, _view: session.detect(view_frame, deadline_s=deadline_s), frame, views)
    t2 = time.perf_counter()
    assert session.info is not None
    return {
        "image": str(path),
        "width": plan.src_w,
        "height": plan.src_h,
        "boxes": boxes_to_source(result, plan),
        "device": device_report(session.info, result),
        "timing": {"decode_s": round(t1 - t0, 6), "device_s": round(t2 - t1, 6), "total_s": round(t2 - t0, 6)},
        "views": views,
    }


def error_line(path: Path, code: str, message: str) -> dict[str, Any]:
    return {"image": str(path), "boxes": [], "error": {"code": code, "message": message}}


def run(args: argparse.Namespace) -> int:
    failures = 0
    with resolved_url(args.device) as url:
        session = DeviceSession(url, baudrate=args.baudrate, target_baud=args.target_baud)
        try:
            session.open()
        except DeviceError as exc:
            print(f"rnnpool detect: cannot reach the device at {url}: {exc}", file=sys.stderr)
            return 2
        try:
            for path in args.images:
                line = _detect_with_retry(session, path, args.timeout, args.views)
                failures += "error" in line
                print(json.dumps(line), flush=True)
        finally:
            session.close()
    return 1 if failures else 0


def _detect_with_retry(session: DeviceSession, path: Path, deadline_s: float | None, views: int) -> dict[str, Any]:
    try:
        if not path.is_file():
            return error_line(path, "not_found", "no such file")
        try:
            return detect_file(session, path, deadline_s, views)
        except DeviceError:
            # One fresh handshake and one more try: a reset or a burst of line noise should not cost
            # an image; a device that fails twice in a row is reported.
            session.close()
            session.open()
            return detect_file(session, path, deadline_s, views)
    except DeviceError as exc:
        return error_line(path, "device_error", f"{type(exc).__name__}: {exc}")
    except UnidentifiedImageError:
        return error_line(path, "bad_image", "not an image in a format Pillow can read")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # unreadable images
        return error_line(path, "bad_image", f"{type(exc).__name__}: {exc}")
