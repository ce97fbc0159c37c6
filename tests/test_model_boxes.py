"""Anchors, box encoding, NMS and the letterbox mapping (numpy only; no torch)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gateway.imaging import letterbox_bytes, letterbox_image, plan_letterbox
from training.boxes import HEADS, anchors_cxcywh, cxcywh_to_xyxy, decode, encode, iou_matrix, nms


def test_anchor_grid_is_4000_at_320() -> None:
    anchors = anchors_cxcywh()
    assert anchors.shape == (4000, 4)
    assert [h.grid for h in HEADS] == [40, 40, 20, 20]
    # Head 1 starts at the top-left cell centre with 8 px anchors; head 4 ends at the bottom-right.
    np.testing.assert_allclose(anchors[0], [4, 4, 8, 8])
    np.testing.assert_allclose(anchors[1600], [4, 4, 16, 16])
    np.testing.assert_allclose(anchors[3200], [8, 8, 32, 32])
    np.testing.assert_allclose(anchors[-1], [312, 312, 48, 48])
    assert anchors[:, :2].min() > 0 and anchors[:, :2].max() < 320


def test_encode_decode_round_trip() -> None:
    rng = np.random.default_rng(0)
    anchors = anchors_cxcywh()[rng.choice(4000, 200, replace=False)]
    x1y1 = rng.uniform(0, 300, (200, 2))
    wh = rng.uniform(2, 120, (200, 2))
    boxes = np.concatenate([x1y1, x1y1 + wh], axis=1)
    np.testing.assert_allclose(decode(encode(boxes, anchors), anchors), boxes, atol=1e-9)


def test_iou_and_nms_keep_best_of_overlapping_and_separate_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], dtype=float)
    iou = iou_matrix(boxes, boxes)
    assert iou[0, 3] == pytest.approx(1.0)
    assert iou[0, 1] == pytest.approx(81 / 119)
    assert iou[0, 2] == 0
    scores = np.array([0.9, 0.95, 0.5, 0.9])
    # 1 beats 0 and 3 (overlap > 0.4); 2 is separate. Equal scores keep the lower index first.
    assert nms(boxes, scores, 0.4, 64).tolist() == [1, 2]
    assert nms(boxes, np.array([0.9, 0.1, 0.5, 0.9]), 0.4, 64).tolist() == [0, 2]
    assert nms(boxes, scores, 0.4, 1).tolist() == [1]


@pytest.mark.parametrize("size", [(641, 427), (427, 641), (333, 333), (1, 999), (999, 1), (319, 17), (1000, 750)])
def test_letterbox_box_mapping_round_trip(size: tuple[int, int]) -> None:
    w, h = size
    plan = plan_letterbox(w, h)
    assert max(plan.scaled_w, plan.scaled_h) == 320
    assert 0 <= plan.pad_x <= 320 - plan.scaled_w and 0 <= plan.pad_y <= 320 - plan.scaled_h
    rng = np.random.default_rng(w * 7 + h)
    x = rng.uniform(0, w * 0.8, 20)
    y = rng.uniform(0, h * 0.8, 20)
    boxes = np.stack([x, y, rng.uniform(0, w - x), rng.uniform(0, h - y)], axis=1)
    np.testing.assert_allclose(plan.to_source(plan.to_frame(boxes)), boxes, atol=1e-6)
    # Frame boxes never leave the scaled image area.
    frame_boxes = plan.to_frame(boxes)
    assert frame_boxes[:, 0].min() >= plan.pad_x - 1e-9
    assert (frame_boxes[:, 0] + frame_boxes[:, 2]).max() <= plan.pad_x + plan.scaled_w + 1e-6


def test_letterbox_is_centred_with_black_border_and_preserves_content() -> None:
    image = Image.new("L", (400, 200), 255)
    frame, plan = letterbox_image(image)
    assert (plan.scaled_w, plan.scaled_h, plan.pad_x, plan.pad_y) == (320, 160, 0, 80)
    assert frame[:80].max() == 0 and frame[240:].max() == 0
    assert frame[80:240].min() == 255


@pytest.mark.parametrize("orientation,expected_size", [(1, (64, 32)), (6, (32, 64)), (8, (32, 64)), (3, (64, 32))])
def test_exif_orientation_is_applied_before_the_letterbox(orientation: int, expected_size: tuple[int, int]) -> None:
    image = Image.new("L", (64, 32), 0)
    image.paste(255, (0, 0, 8, 8))  # a marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif, quality=95)
    frame, plan = letterbox_bytes(buf.getvalue())
    assert (plan.src_w, plan.src_h) == expected_size
    # Where the marker lands depends on the rotation: find it and map it back to the oriented image.
    ys, xs = np.nonzero(frame > 128)
    box = plan.to_source(np.array([[xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]]))[0]
    corner = {1: (0, 0), 3: (56, 24), 6: (24, 0), 8: (0, 56)}[orientation]
    assert abs(box[0] - corner[0]) <= 2 and abs(box[1] - corner[1]) <= 2


def test_large_jpeg_uses_draft_mode_but_maps_to_original_pixels() -> None:
    image = Image.new("L", (2400, 1600), 30)
    image.paste(220, (1200, 800, 1500, 1100))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    frame, plan = letterbox_bytes(buf.getvalue())
    assert (plan.src_w, plan.src_h) == (2400, 1600)
    ys, xs = np.nonzero(frame > 128)
    box = plan.to_source(np.array([[xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]]))[0]
    np.testing.assert_allclose(box, [1200, 800, 300, 300], atol=12)


def test_xyxy_helpers_are_consistent() -> None:
    a = anchors_cxcywh()[:3]
    xyxy = cxcywh_to_xyxy(a)
    np.testing.assert_allclose(xyxy[:, 2:] - xyxy[:, :2], a[:, 2:])
