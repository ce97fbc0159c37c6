"""`rnnpool detect` end to end: real images, the real host firmware over a pty, boxes in original pixels.

Accuracy on the hidden holdout is measured through this command, so its output shape is pinned here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.imaging import letterbox_bytes
from gateway.views import DEFAULT_VIEWS
from training.evaluate import detect_fused
from training.intref import IntegerModel

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared/datasets/faces/dev.jsonl"


def dev_images(n: int) -> list[Path]:
    if not DEV.exists():
        pytest.skip("the face dataset is not at ../shared/datasets/faces")
    rows = [json.loads(line) for line in DEV.read_text().splitlines()[:200]]
    # A mix: a crowd (many candidates), a portrait-orientation image and a landscape one.
    rows.sort(key=lambda r: (-len(r["boxes"]), r["image"]))
    portrait = [r for r in rows if r["height"] > r["width"]]
    landscape = [r for r in rows if r["width"] > r["height"]]
    chosen = [rows[0], *portrait[:1], *landscape[-1:]]
    return [DEV.parent / r["image"] for r in chosen[:n]]


def reference_boxes(model: IntegerModel, path: Path, views: int) -> list[tuple[float, float, float, float, float]]:
    """What the product must print: the numpy integer reference, `views` passes fused as in gateway/views.py."""
    frame, plan = letterbox_bytes(path.read_bytes())
    boxes, scores = detect_fused(model.detect_xyxy, frame, views)
    mapped = plan.to_source(boxes)
    return [
        (float(x), float(y), float(w), float(h), float(s))
        for (x, y, w, h), s in zip(mapped, scores, strict=True)
        if w > 0 and h > 0
    ]


def assert_same_boxes(line: dict, ref: list[tuple[float, float, float, float, float]]) -> None:
    got = [(b["x"], b["y"], b["w"], b["h"], b["score"]) for b in line["boxes"]]
    assert len(got) == len(ref)
    np.testing.assert_allclose(np.array(got).reshape(-1, 5)[:, :4], np.array(ref).reshape(-1, 5)[:, :4], atol=0.01)
    np.testing.assert_allclose(np.array(got).reshape(-1, 5)[:, 4], np.array(ref).reshape(-1, 5)[:, 4], atol=1e-4)


def test_detect_prints_one_json_line_per_image_with_reference_boxes(tmp_path: Path) -> None:
    images = dev_images(3)
    bad = tmp_path / "not-an-image.jpg"
    bad.write_text("hello")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "detect", "--device", "sim", "--json", *map(str, images), str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == len(images) + 1, proc.stderr
    assert proc.returncode == 1  # the bad file fails, the others still run
    model = IntegerModel.load(ROOT / "firmware/model")
    for path, line in zip(images, lines, strict=False):
        assert set(line) >= {"image", "width", "height", "boxes", "device", "timing", "views"}
        assert line["image"] == str(path)
        assert line["views"] == DEFAULT_VIEWS == 2
        assert_same_boxes(line, reference_boxes(model, path, DEFAULT_VIEWS))
        assert all(b["x"] >= 0 and b["x"] + b["w"] <= line["width"] + 0.01 for b in line["boxes"])
        device = line["device"]
        assert device["board"] == "host" and device["tick_unit"] == "ns"
        assert device["peak_ram_bytes"] > 0 and device["model_hash"] == model.hash[:8]
        assert line["timing"]["total_s"] > 0
    assert lines[-1]["error"]["code"] == "bad_image" and lines[-1]["boxes"] == []
    assert "not an image" in lines[-1]["error"]["message"]


def test_detect_one_view_is_the_single_device_pass() -> None:
    """`--views 1` prints exactly the device's own boxes: one pass, nothing fused."""
    path = dev_images(1)[0]
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "detect", "--device", "sim", "--views", "1", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [json.loads(text) for text in proc.stdout.splitlines()]
    assert line["views"] == 1
    model = IntegerModel.load(ROOT / "firmware/model")
    ref = reference_boxes(model, path, 1)
    assert_same_boxes(line, ref)
    # The crowd image: fusing a second view must change the answer, or the default would be pointless.
    assert ref != reference_boxes(model, path, 2)
