"""Image pipeline shared by the gateway and by training/evaluation.

Everything that decides which pixels the device sees lives here, so that accuracy measured offline
transfers to the product: decode (with JPEG draft mode), EXIF orientation, conversion to 8-bit mono,
and the letterbox to the device's input size, plus the inverse mapping of boxes back to the original
image. No torch here: the gateway must never import it.

Letterbox convention (documented in docs/model-format.md): keep the aspect ratio, scale so that the
longer side fills the frame, resample with Pillow's BILINEAR filter, place the image in the
**centre** (offsets rounded down) and fill the border with 0 (black).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

PAD_VALUE = 0
RESAMPLE = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class Letterbox:
    """How an original image of `src_w` x `src_h` maps into a `dst_w` x `dst_h` device frame."""

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    scaled_w: int
    scaled_h: int
    pad_x: int
    pad_y: int

    @property
    def scale_x(self) -> float:
        return self.scaled_w / self.src_w

    @property
    def scale_y(self) -> float:
        return self.scaled_h / self.src_h

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) x, y, w, h boxes from original pixels to device-frame pixels."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, 0] = b[:, 0] * self.scale_x + self.pad_x
        out[:, 1] = b[:, 1] * self.scale_y + self.pad_y
        out[:, 2] = b[:, 2] * self.scale_x
        out[:, 3] = b[:, 3] * self.scale_y
        return out

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) x, y, w, h boxes from device-frame pixels back to original pixels, clipped."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        x1 = (b[:, 0] - self.pad_x) / self.scale_x
        y1 = (b[:, 1] - self.pad_y) / self.scale_y
        x2 = (b[:, 0] + b[:, 2] - self.pad_x) / self.scale_x
        y2 = (b[:, 1] + b[:, 3] - self.pad_y) / self.scale_y
        x1, x2 = np.clip(x1, 0, self.src_w), np.clip(x2, 0, self.src_w)
        y1, y2 = np.clip(y1, 0, self.src_h), np.clip(y2, 0, self.src_h)
        return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


def plan_letterbox(src_w: int, src_h: int, dst_w: int = 320, dst_h: int = 320) -> Letterbox:
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"image has no pixels ({src_w}x{src_h})")
    scale = min(dst_w / src_w, dst_h / src_h)
    scaled_w = min(dst_w, max(1, round(src_w * scale)))
    scaled_h = min(dst_h, max(1, round(src_h * scale)))
    return Letterbox(
        src_w=src_w,
        src_h=src_h,
        dst_w=dst_w,
        dst_h=dst_h,
        scaled_w=scaled_w,
        scaled_h=scaled_h,
        pad_x=(dst_w - scaled_w) // 2,
        pad_y=(dst_h - scaled_h) // 2,
    )


def to_mono(image: Image.Image) -> Image.Image:
    """Any Pillow mode (RGBA, P, CMYK, I;16, LA, ...) to 8-bit luma."""
    if image.mode == "L":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.uint32 if image.mode == "I" else np.uint16)
        if image.mode == "I":
            arr = np.clip(arr, 0, 65535)
        return Image.fromarray((arr.astype(np.uint32) >> 8).astype(np.uint8), mode="L")
    if image.mode == "F":
        arr = np.asarray(image, dtype=np.float32)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite onto black so transparent regions look like the letterbox border.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    return image.convert("L")


def letterbox_image(
    image: Image.Image, dst_w: int = 320, dst_h: int = 320, src_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Letterbox an already-oriented image into a (dst_h, dst_w) uint8 frame.

    `src_size` is the original size when `image` was decoded smaller (JPEG draft mode): the plan,
    and so the box mapping, always refers to the original pixels.
    """
    mono = to_mono(image)
    plan = plan_letterbox(*(src_size or mono.size), dst_w, dst_h)
    if (plan.scaled_w, plan.scaled_h) != mono.size:
        mono = mono.resize((plan.scaled_w, plan.scaled_h), RESAMPLE)
    frame = np.full((dst_h, dst_w), PAD_VALUE, dtype=np.uint8)
    frame[plan.pad_y : plan.pad_y + plan.scaled_h, plan.pad_x : plan.pad_x + plan.scaled_w] = np.asarray(mono)
    return frame, plan


def open_oriented(data: bytes, dst_w: int = 320, dst_h: int = 320) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes (first frame) with EXIF orientation applied; returns (image, original size).

    JPEGs use draft mode: libjpeg decodes at 1/2, 1/4 or 1/8 scale, but only down to twice the
    letterboxed size, so the final bilinear resize still has real pixels to average.
    """
    image = Image.open(io.BytesIO(data))
    w, h = image.size
    if image.format == "JPEG":
        transposed = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        ow, oh = (h, w) if transposed else (w, h)
        scale = min(dst_w / ow, dst_h / oh)
        need_w, need_h = 2 * math.ceil(ow * scale), 2 * math.ceil(oh * scale)
        image.draft("L", (need_h, need_w) if transposed else (need_w, need_h))
    else:
        image.seek(0)
        transposed = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    image.load()
    oriented = ImageOps.exif_transpose(image)
    return oriented, ((h, w) if transposed else (w, h))


def letterbox_bytes(data: bytes, dst_w: int = 320, dst_h: int = 320) -> tuple[np.ndarray, Letterbox]:
    """Image file bytes -> (device frame, mapping). The one path used by the gateway and by eval."""
    image, original_size = open_oriented(data, dst_w, dst_h)
    return letterbox_image(image, dst_w, dst_h, original_size)
