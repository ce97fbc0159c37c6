"""Anchors, box encoding and NMS for RNNPool-Face-M4 (numpy only, no torch).

Boxes here are (x1, y1, x2, y2) in device-frame pixels unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_SIZE = 320
VARIANCE_CENTER = 0.1
VARIANCE_SIZE = 0.2

# Post-processing shared by the float detector, the integer reference and the firmware.
SCORE_MIN = 0.05  # candidates below this face probability are never kept
TOP_K = 256  # bounded candidate list before NMS
NMS_IOU = 0.4
MAX_BOXES = 64


@dataclass(frozen=True)
class HeadGeometry:
    size: int  # anchor side in pixels
    step: int  # stride of the feature map in pixels

    @property
    def grid(self) -> int:
        return INPUT_SIZE // self.step


HEADS = (HeadGeometry(8, 8), HeadGeometry(16, 8), HeadGeometry(32, 16), HeadGeometry(48, 16))


def anchors_cxcywh() -> np.ndarray:
    """(4000, 4) anchors as centre x, centre y, w, h in pixels, in head order, row-major per head."""
    out = []
    for head in HEADS:
        g = head.grid
        ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
        cx = (xs.reshape(-1) + 0.5) * head.step
        cy = (ys.reshape(-1) + 0.5) * head.step
        side = np.full(g * g, float(head.size))
        out.append(np.stack([cx, cy, side, side], axis=1))
    return np.concatenate(out, axis=0)


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    return np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)


def encode(gt_xyxy: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """SSD offsets of matched ground truth (N, 4 xyxy) relative to anchors (N, 4 cxcywh)."""
    cxcy = (gt_xyxy[:, :2] + gt_xyxy[:, 2:]) / 2
    wh = np.maximum(gt_xyxy[:, 2:] - gt_xyxy[:, :2], 1e-6)
    d_c = (cxcy - anchors[:, :2]) / (VARIANCE_CENTER * anchors[:, 2:])
    d_s = np.log(wh / anchors[:, 2:]) / VARIANCE_SIZE
    return np.concatenate([d_c, d_s], axis=1)


def decode(offsets: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Inverse of `encode`: (N, 4) offsets -> (N, 4) xyxy boxes."""
    cxcy = anchors[:, :2] + offsets[:, :2] * VARIANCE_CENTER * anchors[:, 2:]
    wh = anchors[:, 2:] * np.exp(offsets[:, 2:] * VARIANCE_SIZE)
    return np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between (N, 4) and (M, 4) xyxy boxes -> (N, M)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_out: int) -> np.ndarray:
    """Greedy NMS; order is score descending, ties broken by lower index. Returns kept indices."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    keep: list[int] = []
    suppressed = np.zeros(len(scores), dtype=bool)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(int(i))
        if len(keep) == max_out:
            break
        rest = order[pos + 1 :]
        overlaps = iou_matrix(boxes[i : i + 1], boxes[rest])[0]
        suppressed[rest[overlaps > iou_threshold]] = True
    return np.array(keep, dtype=np.int64)
