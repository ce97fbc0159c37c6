"""Image pipeline without a device: formats, EXIF orientation, modes, limits, box mapping.

The pixels must be exactly those of `gateway.imaging` (shared with training): validation may refuse
an upload, never alter it.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from fixtures.images import encode, jpeg, png_raw, scene
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gateway import imaging
from gateway.errors import InvalidImageError, PayloadTooLargeError, UnsupportedMediaTypeError
from gateway.validation import UploadLimits, decode_upload, sniff_format

LIMITS = UploadLimits()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "TIFF", "GIF", "JPEG"])
def test_accepted_formats_decode_like_imaging(fmt: str) -> None:
    params = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(scene(240, 180), fmt, **params)
    decoded = decode_upload(data, LIMITS)
    frame, plan = imaging.letterbox_bytes(data)
    assert decoded.format in (fmt, "MPO")
    assert (decoded.width, decoded.height) == (240, 180)
    assert decoded.frame.shape == (320, 320) and decoded.frame.dtype == np.uint8
    np.testing.assert_array_equal(decoded.frame, frame)
    assert decoded.plan == plan


def test_lossless_formats_give_identical_frames() -> None:
    image = scene(240, 180).convert("L")
    frames = [decode_upload(encode(image, fmt), LIMITS).frame for fmt in ("PNG", "BMP", "TIFF")]
    frames.append(decode_upload(encode(image, "WEBP", lossless=True), LIMITS).frame)
    for frame in frames[1:]:
        np.testing.assert_array_equal(frame, frames[0])


def test_letterbox_is_centred_with_black_border() -> None:
    decoded = decode_upload(encode(Image.new("L", (400, 200), 255), "PNG"), LIMITS)
    plan = decoded.plan
    assert (plan.scaled_w, plan.scaled_h, plan.pad_x, plan.pad_y) == (320, 160, 0, 80)
    assert (decoded.frame[:80] == 0).all() and (decoded.frame[240:] == 0).all()
    assert (decoded.frame[80:240] == 255).all()


# Where the bright top-left corner of the stored image ends up after applying each EXIF orientation.
CORNER_AFTER = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(orientation: int) -> None:
    data = jpeg(200, 100, orientation=orientation)
    decoded = decode_upload(data, LIMITS)
    assert decoded.exif_orientation == orientation
    expected_size = (100, 200) if orientation >= 5 else (200, 100)
    assert (decoded.width, decoded.height) == expected_size
    plan = decoded.plan
    inner = decoded.frame[plan.pad_y : plan.pad_y + plan.scaled_h, plan.pad_x : plan.pad_x + plan.scaled_w]
    h, w = inner.shape
    quads = {
        "tl": inner[: h // 8, : w // 8],
        "tr": inner[: h // 8, -w // 8 :],
        "bl": inner[-h // 8 :, : w // 8],
        "br": inner[-h // 8 :, -w // 8 :],
    }
    brightest = max(quads, key=lambda k: float(quads[k].mean()))
    assert brightest == CORNER_AFTER[orientation]
    np.testing.assert_array_equal(decoded.frame, imaging.letterbox_bytes(data)[0])


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "LA", "PA", "I;16", "I", "F", "CMYK", "YCbCr"])
def test_any_mode_becomes_mono(mode: str) -> None:
    base = scene(120, 90)
    if mode in ("I;16", "I", "F"):
        arr = np.asarray(base.convert("L"), dtype=np.float64)
        scale = {"I;16": 257.0, "I": 257.0, "F": 1.0}[mode]
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        image = Image.fromarray((arr * scale).astype(dtype))
    else:
        image = base.convert(mode)
    fmt = {"CMYK": "JPEG", "YCbCr": "JPEG", "F": "TIFF", "PA": "PNG"}.get(mode, "TIFF" if mode == "I" else "PNG")
    if mode == "PA":
        image = base.convert("P")
        image.info["transparency"] = 0
    data = encode(image, fmt)
    decoded = decode_upload(data, LIMITS)
    assert decoded.frame.shape == (320, 320) and decoded.frame.dtype == np.uint8
    np.testing.assert_array_equal(decoded.frame, imaging.letterbox_bytes(data)[0])
    inner = decoded.frame[decoded.plan.pad_y : decoded.plan.pad_y + decoded.plan.scaled_h]
    assert inner.std() > 5, "the picture must survive the conversion, not turn flat"


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("L", (64, 64), v) for v in (30, 220)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    decoded = decode_upload(buf.getvalue(), LIMITS)
    assert decoded.n_frames == 2
    assert abs(int(decoded.frame[160, 160]) - 30) <= 2


def test_jpeg_draft_mode_keeps_original_coordinates() -> None:
    decoded = decode_upload(jpeg(2000, 1500), LIMITS)
    assert (decoded.width, decoded.height) == (2000, 1500)
    assert (decoded.plan.src_w, decoded.plan.src_h) == (2000, 1500)


def test_limits() -> None:
    with pytest.raises(PayloadTooLargeError) as too_many:
        decode_upload(png_raw(3000, 3000), UploadLimits(max_pixels=1_000_000))
    assert too_many.value.code == "too_many_pixels"
    with pytest.raises(PayloadTooLargeError) as too_big:
        decode_upload(encode(scene(), "PNG"), UploadLimits(max_bytes=100))
    assert too_big.value.code == "upload_too_large"
    with pytest.raises(InvalidImageError) as aspect:
        decode_upload(png_raw(1000, 10), UploadLimits(max_aspect_ratio=50))
    assert aspect.value.code == "bad_aspect_ratio" and "1000x10" in aspect.value.message
    decode_upload(png_raw(1000, 50), UploadLimits(max_aspect_ratio=20))  # exactly at the limit: accepted
    with pytest.raises(UnsupportedMediaTypeError):
        decode_upload(b"GIF" + bytes(10), LIMITS)


def test_sniffing() -> None:
    assert sniff_format(jpeg()) == "JPEG"
    assert sniff_format(encode(scene(), "WEBP")) == "WEBP"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVE") is None
    assert sniff_format(b"") is None


@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(1, 5000),
    h=st.integers(1, 5000),
    box=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
)
def test_box_mapping_round_trips(w: int, h: int, box: tuple[float, float, float, float]) -> None:
    plan = imaging.plan_letterbox(w, h)
    x, y = box[0] * w, box[1] * h
    bw, bh = box[2] * (w - x), box[3] * (h - y)
    original = np.array([[x, y, bw, bh]])
    back = plan.to_source(plan.to_frame(original))
    np.testing.assert_allclose(back, original, atol=1e-6 * max(w, h))
    frame = plan.to_frame(original)[0]
    assert plan.pad_x - 1e-9 <= frame[0] <= plan.pad_x + plan.scaled_w + 1e-9
    assert plan.pad_y - 1e-9 <= frame[1] <= plan.pad_y + plan.scaled_h + 1e-9
