"""Two-view detection: the device sees the frame and a mirrored copy of it; the boxes are fused here.

Why: one device pass of RNNPool-Face-M4 (integer model) scores dev AP50 0.826 on faces >= 16 px; two
passes fused score 0.854 (`python -m training.evaluate --int --views 1|2`). The price is a second
transfer and a second pass on the device, so every view is reported in the timings.

Why the mirror is also shifted: the first head reads the frame on an 8 px grid. A plain mirror image
is sampled at nearly the grid phase of the original (1 px off across, exactly down), so the two
passes make correlated mistakes (dev AP50 0.848 fused). Shifting the mirrored frame by half a cell
(4 px, right and down) makes the second pass sample every face between the first pass's cells
(0.854). Pixels shifted in repeat the edge row and column; the 4 px shifted out (the original's left
columns and bottom rows) are seen by the first pass only, and are often letterbox border anyway.

Fusion: boxes from all views are taken in descending score; each joins the cluster whose fused box it
overlaps most (IoU >= `FUSE_IOU`, the device's own NMS threshold) unless that cluster already holds a
box from the same view, else it starts a cluster. A cluster's box is the score-weighted mean of its
members; its score is the mean over all views, a view that found nothing counting as 0, so a face
both passes agree on outranks one that only one pass saw. numpy only: training's evaluation imports
this module so its figures are the product's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from gateway.device import Box, DetectResult

MAX_VIEWS = 2
DEFAULT_VIEWS = 2
MIRROR_SHIFT_PX = 4  # half of the first head's 8 px grid step
FUSE_IOU = 0.4  # the device's NMS threshold (docs/model-format.md)

ViewBoxes = tuple[np.ndarray, np.ndarray]  # ((N, 4) x, y, w, h in frame pixels, (N,) scores)


def check_views(views: int) -> int:
    if not 1 <= views <= MAX_VIEWS:
        raise ValueError(f"views must be 1..{MAX_VIEWS}, got {views}")
    return views


def view_frame(frame: np.ndarray, view: int) -> np.ndarray:
    """The frame the device sees for `view`: 0 is the frame itself, 1 its mirror shifted by half a cell."""
    if view == 0:
        return frame
    if view != 1:
        raise ValueError(f"no view {view}")
    s = MIRROR_SHIFT_PX
    mirrored = frame[:, ::-1]
    out = np.empty_like(frame)
    out[s:, s:] = mirrored[:-s, :-s]
    out[:s, s:] = mirrored[:1, :-s]  # rows shifted in repeat the top edge ...
    out[:, :s] = out[:, s : s + 1]  # ... and columns the left edge
    return out


def boxes_from_view(boxes: np.ndarray, view: int, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Map (N, 4) x, y, w, h boxes found in `view`'s frame back to the original frame, clipped to it."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if view == 0:
        return b.copy()
    height, width = frame_shape[:2]
    x2 = width - (b[:, 0] - MIRROR_SHIFT_PX)
    x1 = x2 - b[:, 2]
    y1 = b[:, 1] - MIRROR_SHIFT_PX
    y2 = y1 + b[:, 3]
    x1, x2 = np.clip(x1, 0, width), np.clip(x2, 0, width)
    y1, y2 = np.clip(y1, 0, height), np.clip(y2, 0, height)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with (N, 4) others."""
    iw = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.where(union - inter > 0, inter / np.maximum(union - inter, 1e-12), 0.0)


def fuse(views: Sequence[ViewBoxes]) -> ViewBoxes:
    """Fuse per-view detections (already in the original frame) into one list, best first."""
    if len(views) == 1:
        return np.asarray(views[0][0], dtype=np.float64).reshape(-1, 4), np.asarray(views[0][1], dtype=np.float64)
    xywh = np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, 4) for b, _ in views])
    scores = np.concatenate([np.asarray(s, dtype=np.float64) for _, s in views])
    source = np.concatenate([np.full(len(s), i) for i, (_, s) in enumerate(views)])
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    # Bounded: at most views x MAX_BOXES (2 x 64) boxes, so at most as many clusters.
    weighted = np.zeros((len(scores), 4))  # per cluster: sum of score * box
    weight = np.zeros(len(scores))  # per cluster: sum of scores
    members = np.zeros((len(scores), len(views)), dtype=bool)
    n = 0
    for k in np.argsort(-scores, kind="stable"):
        chosen = -1
        if n:
            fused = weighted[:n] / weight[:n, None]
            iou = np.where(members[:n, source[k]], -1.0, _iou(xyxy[k], fused))
            best = int(iou.argmax())
            if iou[best] >= FUSE_IOU:
                chosen = best
        if chosen < 0:
            chosen, n = n, n + 1
        weighted[chosen] += scores[k] * xyxy[k]
        weight[chosen] += scores[k]
        members[chosen, source[k]] = True
    fused = weighted[:n] / np.maximum(weight[:n, None], 1e-12)
    fused_scores = weight[:n] / len(views)
    order = np.argsort(-fused_scores, kind="stable")
    fused, fused_scores = fused[order], fused_scores[order]
    return np.concatenate([fused[:, :2], fused[:, 2:] - fused[:, :2]], axis=1), fused_scores


def fuse_views(per_view: Sequence[ViewBoxes], frame_shape: tuple[int, ...]) -> ViewBoxes:
    """Boxes found in each view's own frame (view 0 first) -> fused boxes in the original frame."""
    return fuse([(boxes_from_view(boxes, view, frame_shape), scores) for view, (boxes, scores) in enumerate(per_view)])


def fuse_results(results: Sequence[DetectResult], frame_shape: tuple[int, ...]) -> DetectResult:
    """One DetectResult from one per view: fused boxes, device time summed, memory the worst view's."""
    if len(results) == 1:
        return results[0]
    xywh, scores = fuse_views(
        [
            (np.array([[b.x, b.y, b.w, b.h] for b in r.boxes]).reshape(-1, 4), np.array([b.score for b in r.boxes]))
            for r in results
        ],
        frame_shape,
    )
    stage_ticks: dict[str, int] | None = None
    if all(r.stage_ticks for r in results):
        stage_ticks = {}
        for r in results:
            assert r.stage_ticks is not None
            for name, ticks in r.stage_ticks.items():
                stage_ticks[name] = stage_ticks.get(name, 0) + ticks
    return replace(
        results[0],
        boxes=[
            Box(float(x), float(y), float(w), float(h), float(s)) for (x, y, w, h), s in zip(xywh, scores, strict=True)
        ],
        ticks_receive=sum(r.ticks_receive for r in results),
        ticks_compute=sum(r.ticks_compute for r in results),
        ticks_total=sum(r.ticks_total for r in results),
        peak_ram_bytes=max(r.peak_ram_bytes for r in results),
        stack_high_water_bytes=max(r.stack_high_water_bytes for r in results),
        stage_ticks=stage_ticks,
        host_seconds=sum(r.host_seconds for r in results),
    )


def detect_views(detect_one: Callable[[np.ndarray, int], DetectResult], frame: np.ndarray, views: int) -> DetectResult:
    """Run `detect_one(view_frame, view)` for each view in turn and fuse the answers."""
    check_views(views)
    results = [detect_one(view_frame(frame, view), view) for view in range(views)]
    return fuse_results(results, frame.shape)
