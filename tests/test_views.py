"""Two-view detection (gateway/views.py): the second view's geometry, box fusion, result merging."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.device import Box, DetectResult
from gateway.views import (
    FUSE_IOU,
    MIRROR_SHIFT_PX,
    boxes_from_view,
    check_views,
    detect_views,
    fuse,
    fuse_results,
    view_frame,
)


def frame_with_block(x: int, y: int, w: int, h: int, shape: tuple[int, int] = (320, 320)) -> np.ndarray:
    frame = np.zeros(shape, dtype=np.uint8)
    frame[y : y + h, x : x + w] = 200
    return frame


def bright_box(frame: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(frame > 100)
    return np.array([[xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]], dtype=np.float64)


# (300, 0, 20, 12) touches the top and right edges, where the view repeats edge pixels. Objects within
# MIRROR_SHIFT_PX of the left or bottom edge lose those pixels in the second view (the first still sees them).
@pytest.mark.parametrize(
    ("x", "y", "w", "h"), [(10, 20, 30, 40), (250, 7, 17, 60), (300, 0, 20, 12), (100, 250, 64, 33)]
)
def test_a_box_found_in_the_mirrored_view_maps_back_onto_the_object(x: int, y: int, w: int, h: int) -> None:
    frame = frame_with_block(x, y, w, h)
    seen = view_frame(frame, 1)
    assert not np.array_equal(seen, frame)
    back = boxes_from_view(bright_box(seen), 1, frame.shape)
    np.testing.assert_array_equal(back, [[x, y, w, h]])


def test_the_second_view_is_a_mirror_shifted_by_half_a_cell_with_edges_repeated() -> None:
    frame = np.arange(320 * 320, dtype=np.int64).reshape(320, 320).astype(np.uint8)
    seen = view_frame(frame, 1)
    s = MIRROR_SHIFT_PX
    assert s == 4 and seen.shape == frame.shape and seen.dtype == frame.dtype
    np.testing.assert_array_equal(seen[s:, s:], frame[:-s, ::-1][:, :-s])
    np.testing.assert_array_equal(seen[:s, s:], np.repeat(seen[s : s + 1, s:], s, axis=0))
    np.testing.assert_array_equal(seen[:, :s], np.repeat(seen[:, s : s + 1], s, axis=1))
    assert view_frame(frame, 0) is frame


def test_boxes_reaching_past_the_view_edge_are_clipped_to_the_frame() -> None:
    back = boxes_from_view(np.array([[0.0, 0.0, 20.0, 10.0]]), 1, (240, 320))
    x, y, w, h = back[0]
    assert (x, y) == (320 - 16, 0) and (w, h) == (16, 6)


def test_fuse_averages_agreeing_boxes_and_halves_a_box_only_one_view_saw() -> None:
    view0 = (np.array([[100.0, 100.0, 20.0, 20.0], [10.0, 10.0, 30.0, 30.0]]), np.array([0.9, 0.6]))
    view1 = (np.array([[102.0, 100.0, 20.0, 20.0]]), np.array([0.3]))
    boxes, scores = fuse([view0, view1])
    assert len(boxes) == 2
    np.testing.assert_allclose(scores, [0.6, 0.3])  # (0.9 + 0.3) / 2, then 0.6 / 2
    # Score-weighted: the confident view pulls the box towards itself.
    np.testing.assert_allclose(boxes[0], [100.5, 100.0, 20.0, 20.0])
    np.testing.assert_allclose(boxes[1], [10.0, 10.0, 30.0, 30.0])


def test_fuse_never_merges_two_boxes_of_the_same_view_or_boxes_under_the_iou_threshold() -> None:
    # Two neighbouring faces seen by one view stay two faces even though they overlap a little.
    view0 = (np.array([[0.0, 0.0, 20.0, 20.0], [10.0, 0.0, 20.0, 20.0]]), np.array([0.8, 0.7]))
    empty = (np.zeros((0, 4)), np.zeros(0))
    boxes, scores = fuse([view0, empty])
    assert len(boxes) == 2 and np.all(np.diff(scores) <= 0)
    # Overlap just under the threshold: separate clusters.
    side = 20.0
    shift = side * (1 - FUSE_IOU) / (1 + FUSE_IOU) + 0.5  # IoU of two shifted squares < FUSE_IOU
    view1 = (np.array([[shift, 40.0, side, side]]), np.array([0.5]))
    view0 = (np.array([[0.0, 40.0, side, side]]), np.array([0.5]))
    assert len(fuse([view0, view1])[0]) == 2


def test_one_view_passes_through_untouched() -> None:
    view = (np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([0.5]))
    boxes, scores = fuse([view])
    np.testing.assert_array_equal(boxes, view[0])
    np.testing.assert_array_equal(scores, view[1])


def result(boxes: list[Box], ticks: int, ram: int) -> DetectResult:
    return DetectResult(
        request_id=ticks,
        boxes=boxes,
        ticks_receive=ticks,
        ticks_compute=10 * ticks,
        ticks_total=11 * ticks,
        tick_unit="cycles",
        peak_ram_bytes=ram,
        stack_high_water_bytes=ram // 10,
        stage_ticks={"conv1": ticks, "heads": 2 * ticks},
        clock_hz=168_000_000,
        host_seconds=0.5,
    )


def test_detect_views_runs_each_view_on_its_frame_and_sums_the_device_costs() -> None:
    frame = frame_with_block(40, 50, 24, 24)
    seen: list[tuple[int, np.ndarray]] = []

    def device(view_image: np.ndarray, view: int) -> DetectResult:
        seen.append((view, view_image))
        x, y, w, h = bright_box(view_image)[0]  # a perfect detector
        return result([Box(x, y, w, h, 0.8)], ticks=100 + view, ram=5000 - view)

    fused = detect_views(device, frame, 2)
    assert [v for v, _ in seen] == [0, 1]
    np.testing.assert_array_equal(seen[1][1], view_frame(frame, 1))
    (box,) = fused.boxes
    assert (box.x, box.y, box.w, box.h) == (40, 50, 24, 24) and box.score == pytest.approx(0.8)
    assert (fused.ticks_receive, fused.ticks_compute, fused.ticks_total) == (201, 2010, 2211)
    assert fused.peak_ram_bytes == 5000 and fused.stack_high_water_bytes == 500
    assert fused.stage_ticks == {"conv1": 201, "heads": 402}
    assert fused.host_seconds == pytest.approx(1.0)
    single = detect_views(device, frame, 1)
    assert single.ticks_total == 1100 and len(single.boxes) == 1


def test_fuse_results_of_one_view_is_that_result() -> None:
    only = result([Box(1, 2, 3, 4, 0.5)], ticks=7, ram=9)
    assert fuse_results([only], (320, 320)) is only


@pytest.mark.parametrize("views", [0, 3, -1])
def test_view_counts_outside_one_and_two_are_refused(views: int) -> None:
    with pytest.raises(ValueError, match="views must be"):
        check_views(views)
