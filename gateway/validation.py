"""Upload validation: from untrusted bytes to the device frame, or a precise client error.

The pixels themselves come from `gateway.imaging` (shared with training, so accuracy measured offline
holds here); this module only decides what is allowed to reach it. Cheap checks run first, on the
header alone, so hostile files (decompression bombs, absurd shapes) are refused before any pixel
is decoded:

1. size of the upload (bounded read, 413), emptiness;
2. magic bytes (415 for anything that is not one of the accepted formats);
3. header: format allow-list, dimensions, pixel count (413), aspect ratio (422);
4. decode + letterbox via imaging.letterbox_bytes (422 when the file is corrupt or truncated).
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from gateway import imaging
from gateway.errors import InvalidImageError, PayloadTooLargeError, UnsupportedMediaTypeError

# Pillow format ids tried when opening an upload. MPO is what Pillow calls the multi-picture JPEGs
# that many phones write; it is a JPEG to everything else.
Image.init()  # registers every plugin, so the allow-list below can name them
ACCEPTED_FORMATS = tuple(f for f in ("JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF") if f in Image.OPEN)
ACCEPTED_MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff")

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"WEBP", 8, "WEBP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"II+\x00", 0, "TIFF"),
    (b"MM\x00+", 0, "TIFF"),
)

# Image formats we recognise but do not accept, so the client hears "unsupported format" rather than
# "not an image". Checked by magic bytes only: nothing here is ever handed to a decoder.
_OTHER_IMAGE_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"8BPS", 0, "PSD"),
    (b"ftypheic", 4, "HEIC"),
    (b"ftypheix", 4, "HEIC"),
    (b"ftypmif1", 4, "HEIF"),
    (b"ftypavif", 4, "AVIF"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000"),
    (b"\xff\x4f\xff\x51", 0, "JPEG 2000"),
    (b"qoif", 0, "QOI"),
    (b"\x76\x2f\x31\x01", 0, "OpenEXR"),
    (b"DDS ", 0, "DDS"),
    (b"%!PS", 0, "PostScript"),
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
)
_PNM = re.compile(rb"^P[1-7]\s")
_SVG = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<svg[\s>]", re.DOTALL | re.IGNORECASE)

_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_aspect_ratio: float = 20.0


@dataclass(frozen=True)
class DecodedUpload:
    frame: np.ndarray  # (dst_h, dst_w) uint8, exactly what the device is sent
    plan: imaging.Letterbox
    width: int  # original size after EXIF orientation
    height: int
    format: str
    mode: str  # Pillow mode of the file before conversion to mono
    n_frames: int
    exif_orientation: int
    decode_s: float


def sniff_format(data: bytes) -> str | None:
    """The accepted format the magic bytes claim, or None. Says nothing about whether the rest is valid."""
    for magic, offset, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            if name == "WEBP" and not data.startswith(b"RIFF"):
                continue
            return name
    return None


def other_image_format(data: bytes) -> str | None:
    """Name of a recognised but refused image format, or None."""
    for magic, offset, name in _OTHER_IMAGE_MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    if _PNM.match(data[:3]):
        return "PNM"
    if _SVG.match(data[:4096]):
        return "SVG"
    return None


def classify_content_type(content_type: str | None) -> str:
    """'multipart' or 'raw' for the request's declared type; 415 for types that cannot carry an image.

    The declared type is not trusted for the format (the bytes are sniffed), but a body declared as
    JSON, text or a form is a client bug worth reporting rather than guessing around.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        return "multipart"
    if media in ("", "application/octet-stream") or media.startswith("image/"):
        return "raw"
    raise UnsupportedMediaTypeError(
        f"content type {media!r} cannot carry an image: send multipart/form-data with an 'image' field, "
        f"or the raw file as image/* or application/octet-stream",
        code="unsupported_content_type",
    )


async def read_bounded(chunks: AsyncIterator[bytes], limit: int, declared_length: str | None) -> bytes:
    """Read a request body, refusing (413) as soon as it is known to exceed `limit` bytes.

    A too-large Content-Length is refused before reading anything; a chunked or lying body is cut
    off once `limit` is passed, so memory stays bounded whatever the client sends.
    """
    if declared_length is not None:
        try:
            length = int(declared_length)
        except ValueError:
            length = -1
        if length > limit:
            raise _too_large(length, limit)
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise _too_large(None, limit)
    return bytes(buf)


def _too_large(size: int | None, limit: int) -> PayloadTooLargeError:
    what = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return PayloadTooLargeError(f"upload is {what}; the limit is {limit} bytes", code="upload_too_large")


def decode_upload(data: bytes, limits: UploadLimits, dst_w: int = 320, dst_h: int = 320) -> DecodedUpload:
    """Validate and letterbox an upload; raises a GatewayError subclass describing the first problem."""
    started = time.perf_counter()
    if not data:
        raise InvalidImageError("the upload is empty", code="empty_upload")
    if len(data) > limits.max_bytes:
        raise _too_large(len(data), limits.max_bytes)

    claimed = sniff_format(data)
    if claimed is None:
        other = other_image_format(data)
        if other is not None:
            raise UnsupportedMediaTypeError(
                f"{other} images are not accepted; send JPEG, PNG, WebP, BMP, GIF or TIFF",
                code="unsupported_image_format",
            )
        raise UnsupportedMediaTypeError(
            "the upload is not an image in an accepted format (JPEG, PNG, WebP, BMP, GIF, TIFF)",
            code="not_an_image",
        )

    try:
        header = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(limits) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(f"the {claimed} header is corrupt and cannot be read", code="corrupt_image") from exc

    with header:
        width, height = header.size
        fmt = header.format or claimed
        mode = header.mode
        n_frames = int(getattr(header, "n_frames", 1) or 1)
        try:
            orientation = int(header.getexif().get(_EXIF_ORIENTATION, 1))
        except Exception:
            # A broken EXIF block is common in the wild and only costs us the rotation.
            orientation = 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    _check_geometry(width, height, limits)

    try:
        frame, plan = imaging.letterbox_bytes(data, dst_w, dst_h)
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(limits) from exc
    except MemoryError as exc:
        raise PayloadTooLargeError("image is too large to decode", code="too_many_pixels") from exc
    except Exception as exc:
        # Pillow reports broken files through many exception types (OSError for truncation,
        # SyntaxError, ValueError, struct.error, EOFError, ...): all of them mean the same to a client.
        message = f"the {fmt} image is corrupt or truncated: {_short(exc)}"
        raise InvalidImageError(message, code="corrupt_image") from exc

    if frame.shape != (dst_h, dst_w) or frame.dtype != np.uint8:
        raise InvalidImageError("image could not be converted to the device frame", code="corrupt_image")
    if (plan.src_w, plan.src_h) != (width, height):
        # The header and the decoded image disagree: only a malformed file does that.
        raise InvalidImageError(
            f"image header says {width}x{height} but it decodes as {plan.src_w}x{plan.src_h}", code="corrupt_image"
        )
    return DecodedUpload(
        frame=frame,
        plan=plan,
        width=width,
        height=height,
        format=fmt,
        mode=mode,
        n_frames=n_frames,
        exif_orientation=orientation,
        decode_s=time.perf_counter() - started,
    )


def _too_many_pixels(limits: UploadLimits, width: int | None = None, height: int | None = None) -> PayloadTooLargeError:
    size = f" is {width}x{height} = {width * height} pixels;" if width and height else " has too many pixels;"
    return PayloadTooLargeError(f"image{size} the limit is {limits.max_pixels}", code="too_many_pixels")


def _check_geometry(width: int, height: int, limits: UploadLimits) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"image has no pixels ({width}x{height})", code="empty_image")
    if width * height > limits.max_pixels:
        raise _too_many_pixels(limits, width, height)
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise InvalidImageError(
            f"image is {width}x{height}: aspect ratio {ratio:.0f}:1 exceeds the limit of "
            f"{limits.max_aspect_ratio:g}:1 (letterboxed to 320x320 it would be a sliver the detector cannot use)",
            code="bad_aspect_ratio",
        )


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
