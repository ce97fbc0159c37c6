"""S3FD-style anchor matching and multibox loss with 3:1 hard-negative mining."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.boxes import anchors_cxcywh, cxcywh_to_xyxy, encode, iou_matrix

POSITIVE_IOU = 0.35
NEGATIVE_RATIO = 3

ANCHORS = anchors_cxcywh()
ANCHORS_XYXY = cxcywh_to_xyxy(ANCHORS)


def match(boxes: np.ndarray, ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One image's faces (N, 4 xyxy) -> labels (4000,) in {1 face, 0 background, -1 ignored}
    and loc targets (4000, 4). Boxes flagged `ignore` (hard) never make positives or negatives."""
    n_anchors = len(ANCHORS)
    labels = np.zeros(n_anchors, dtype=np.int64)
    targets = np.zeros((n_anchors, 4), dtype=np.float32)
    faces, hard = boxes[~ignore], boxes[ignore]
    if len(hard):
        labels[iou_matrix(ANCHORS_XYXY, hard).max(axis=1) >= POSITIVE_IOU] = -1
    if len(faces):
        iou = iou_matrix(ANCHORS_XYXY, faces)
        best_face = iou.argmax(axis=1)
        best_iou = iou[np.arange(n_anchors), best_face]
        # Every face keeps its best anchor, even below the threshold (S3FD scale compensation).
        best_anchor = iou.argmax(axis=0)
        best_iou[best_anchor] = 1.0
        best_face[best_anchor] = np.arange(len(faces))
        positive = best_iou >= POSITIVE_IOU
        labels[positive] = 1
        targets[positive] = encode(faces[best_face[positive]], ANCHORS[positive])
    return labels, targets


def multibox_loss(
    loc: torch.Tensor, conf: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """loc (B, A, 4), conf (B, A, 2), labels (B, A), targets (B, A, 4) -> (loc loss, conf loss)."""
    positive = labels == 1
    n_pos = positive.sum(dim=1, keepdim=True)
    ce = F.cross_entropy(conf.reshape(-1, 2), labels.clamp(min=0).reshape(-1), reduction="none").view_as(labels)
    # Hard-negative mining: rank background anchors by loss, keep 3 per positive (at least 16).
    mining = ce.detach().clone()
    mining[labels != 0] = -1.0
    rank = mining.argsort(dim=1, descending=True).argsort(dim=1)
    n_neg = (NEGATIVE_RATIO * n_pos).clamp(min=16)
    negative = (rank < n_neg) & (labels == 0)
    total_pos = n_pos.sum().clamp(min=1).float()
    conf_loss = ce[positive | negative].sum() / total_pos
    loc_loss = F.smooth_l1_loss(loc[positive], targets[positive], reduction="sum") / total_pos
    return loc_loss, conf_loss
