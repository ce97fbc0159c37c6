"""Training augmentation: zoomed crops land the chosen face at the asked size, and faces too small or
marked hard are ignored rather than taught as faces or background (numpy + Pillow only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import FRAME, FaceAugmenter, Record


def one_face_record(tmp_path: Path, face_px: float, hard: bool = False) -> Record:
    """A 640x640 picture (letterbox scale 0.5) with one face box of `face_px` source pixels."""
    path = tmp_path / "picture.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (640, 640), dtype=np.uint8)).save(path)
    return Record(
        path=path,
        width=640,
        height=640,
        boxes=np.array([[300.0, 280.0, face_px, face_px]]),
        hard=np.array([hard]),
        source="test",
    )


@pytest.mark.parametrize("target_px", [14.0, 24.0, 60.0])
def test_zoomed_crop_puts_the_face_at_the_drawn_size(tmp_path: Path, target_px: float) -> None:
    augmenter = FaceAugmenter([one_face_record(tmp_path, 40.0)], seed=1, plain_fraction=0.0, zoom_px=(target_px,) * 2)
    for _ in range(10):
        frame, boxes, ignore = augmenter.sample(0)
        assert frame.shape == (FRAME, FRAME) and frame.dtype == np.uint8
        assert len(boxes) == 1 and not ignore[0]
        width, height = boxes[0, 2] - boxes[0, 0], boxes[0, 3] - boxes[0, 1]
        assert width == pytest.approx(target_px, abs=1.0) and height == pytest.approx(target_px, abs=1.0)
        assert (boxes >= 0).all() and (boxes <= FRAME).all()


def test_plain_frames_are_the_letterboxed_picture(tmp_path: Path) -> None:
    augmenter = FaceAugmenter([one_face_record(tmp_path, 40.0)], seed=2, plain_fraction=1.0)
    for _ in range(6):
        _, boxes, _ = augmenter.sample(0)
        # Letterbox scale 0.5, so the 40 px face is 20 px; a flip mirrors x only.
        assert boxes[0, 2] - boxes[0, 0] == pytest.approx(20.0, abs=0.01)
        assert boxes[0, 1] == pytest.approx(140.0, abs=0.01)
        assert min(boxes[0, 0], FRAME - boxes[0, 2]) == pytest.approx(150.0, abs=0.01)


def test_faces_below_min_face_are_ignored_not_background(tmp_path: Path) -> None:
    record = one_face_record(tmp_path, 16.0)  # 8 px on a plain frame
    strict = FaceAugmenter([record], seed=3, plain_fraction=1.0, min_face=10.0)
    lenient = FaceAugmenter([record], seed=3, plain_fraction=1.0, min_face=5.0)
    _, boxes, ignore = strict.sample(0)
    assert len(boxes) == 1 and ignore[0]
    _, boxes, ignore = lenient.sample(0)
    assert len(boxes) == 1 and not ignore[0]


def test_hard_faces_stay_ignored(tmp_path: Path) -> None:
    augmenter = FaceAugmenter([one_face_record(tmp_path, 80.0, hard=True)], seed=4, plain_fraction=0.5)
    for _ in range(6):
        _, boxes, ignore = augmenter.sample(0)
        assert len(boxes) == 1 and ignore[0]
