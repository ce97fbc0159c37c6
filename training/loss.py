"""S3FD-style anchor matching and multibox loss with 3:1 hard-negative mining."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.boxes import INPUT_SIZE, anchors_cxcywh, cxcywh_to_xyxy, encode, iou_matrix

POSITIVE_IOU = 0.35
# Faces larger than the biggest anchor (48 px) overlap every anchor poorly: with a fixed 0.35 threshold
# they get a single positive while the anchors lying inside them are mined as hard negatives, and the
# model learns to miss them. Such a face also takes the anchors within RELATIVE_IOU of its best IoU
# whose centres lie in its middle third (so the offsets to learn stay moderate).
RELATIVE_IOU = 0.7
CENTRE_FRACTION = 1 / 6
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
        face_c = (faces[:, :2] + faces[:, 2:]) / 2
        centre_offset = np.abs(ANCHORS[:, None, :2] - face_c[None])  # (anchors, faces, 2)
        threshold = np.maximum(np.minimum(POSITIVE_IOU, RELATIVE_IOU * iou.max(axis=0)), 1e-6)
        # Each anchor goes to the face it covers best relative to that face's own threshold.
        ratio = iou / threshold
        relaxed = threshold < POSITIVE_IOU
        if relaxed.any():
            face_wh = faces[relaxed, 2:] - faces[relaxed, :2]
            central = (centre_offset[:, relaxed] <= CENTRE_FRACTION * face_wh[None]).all(axis=2)
            ratio[:, relaxed] = np.where(central, ratio[:, relaxed], iou[:, relaxed] / POSITIVE_IOU)
        best_face = ratio.argmax(axis=1)
        best_ratio = ratio[np.arange(n_anchors), best_face]
        # Every face keeps its best anchor (S3FD scale compensation); among equal IoUs (all the anchors
        # inside a large face) the one nearest the face's centre.
        best_anchor = (iou - 1e-6 * centre_offset.sum(axis=2) / INPUT_SIZE).argmax(axis=0)
        best_ratio[best_anchor] = 1.0
        best_face[best_anchor] = np.arange(len(faces))
        positive = best_ratio >= 1.0
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
