"""Training-target matching: which anchors learn which face (training/loss.py)."""

from __future__ import annotations

import numpy as np
import pytest

from training.boxes import decode, iou_matrix
from training.loss import ANCHORS, ANCHORS_XYXY, POSITIVE_IOU, match


def _faces(*boxes: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(boxes, dtype=np.float32)


def test_anchor_sized_face_uses_the_plain_iou_threshold() -> None:
    faces = _faces((100, 100, 124, 124))
    labels, targets = match(faces, np.zeros(1, dtype=bool))
    positive = np.flatnonzero(labels == 1)
    assert len(positive) >= 2
    assert (iou_matrix(ANCHORS_XYXY[positive], faces)[:, 0] >= POSITIVE_IOU).all()
    np.testing.assert_allclose(
        decode(targets[positive], ANCHORS[positive]), np.repeat(faces, len(positive), 0), atol=1e-3
    )


@pytest.mark.parametrize("side", [96, 128, 160])
def test_face_larger_than_every_anchor_gets_several_central_positives(side: int) -> None:
    # No anchor reaches IoU 0.35 with these faces; they must still have more than one positive, or the
    # anchors inside them get mined as background and large faces are never found.
    x0 = 150 - side / 2
    faces = _faces((x0, x0, x0 + side, x0 + side))
    labels, targets = match(faces, np.zeros(1, dtype=bool))
    positive = np.flatnonzero(labels == 1)
    assert len(positive) >= 4
    centre_offset = np.abs(ANCHORS[positive, :2] - 150)
    assert (centre_offset <= side / 6 + 1e-6).all()
    np.testing.assert_allclose(
        decode(targets[positive], ANCHORS[positive]), np.repeat(faces, len(positive), 0), atol=1e-2
    )
    # Anchors overlapping the face but not chosen stay background only if they overlap it a little.
    background = labels == 0
    assert iou_matrix(ANCHORS_XYXY[background], faces).max() < POSITIVE_IOU


def test_hard_faces_are_neither_face_nor_background() -> None:
    faces = _faces((40, 40, 72, 72), (200, 200, 232, 232))
    labels, _ = match(faces, np.array([False, True]))
    overlaps_hard = iou_matrix(ANCHORS_XYXY, faces[1:])[:, 0] >= POSITIVE_IOU
    assert overlaps_hard.any() and (labels[overlaps_hard] == -1).all()
    assert (labels == 1).any()


def test_a_small_face_inside_a_large_one_keeps_its_own_positives() -> None:
    faces = _faces((100, 100, 228, 228), (150, 150, 166, 166))
    labels, targets = match(faces, np.zeros(2, dtype=bool))
    positive = np.flatnonzero(labels == 1)
    learned = decode(targets[positive], ANCHORS[positive])
    for face in faces:
        assert (np.abs(learned - face).max(axis=1) < 1e-2).any()
