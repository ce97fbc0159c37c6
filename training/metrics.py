"""AP at IoU 0.5 with ignored (hard) faces, as the WIDER FACE protocol treats them (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.boxes import iou_matrix


@dataclass
class APAccumulator:
    """Collects detections over images; `ap()` gives VOC all-point average precision."""

    iou_threshold: float = 0.5
    scores: list[float] = field(default_factory=list)
    is_true: list[bool] = field(default_factory=list)
    n_faces: int = 0

    def add(self, det_xyxy: np.ndarray, det_scores: np.ndarray, gt_xyxy: np.ndarray, gt_ignore: np.ndarray) -> None:
        order = np.argsort(-det_scores, kind="stable")
        det_xyxy, det_scores = det_xyxy[order], det_scores[order]
        self.n_faces += int((~gt_ignore).sum())
        taken = np.zeros(len(gt_xyxy), dtype=bool)
        iou = iou_matrix(det_xyxy, gt_xyxy) if len(gt_xyxy) and len(det_xyxy) else np.zeros((len(det_xyxy), 0))
        for d in range(len(det_xyxy)):
            if iou.shape[1]:
                # Prefer an untaken counted face; else an ignored one (which makes the detection neutral).
                cand = np.where(~taken & ~gt_ignore, iou[d], -1.0)
                g = int(cand.argmax())
                if cand[g] >= self.iou_threshold:
                    taken[g] = True
                    self.scores.append(float(det_scores[d]))
                    self.is_true.append(True)
                    continue
                if (iou[d][gt_ignore] >= self.iou_threshold).any():
                    continue
            self.scores.append(float(det_scores[d]))
            self.is_true.append(False)

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(-np.asarray(self.scores), kind="stable")
        tp = np.asarray(self.is_true, dtype=np.float64)[order]
        ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
        recall = ctp / max(self.n_faces, 1)
        precision = ctp / np.maximum(ctp + cfp, 1e-12)
        return recall, precision

    def ap(self) -> float:
        if self.n_faces == 0:
            return 0.0
        recall, precision = self.curve()
        r = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
        p = np.concatenate([[1.0], precision, [0.0]])
        p = np.maximum.accumulate(p[::-1])[::-1]
        steps = np.flatnonzero(r[1:] != r[:-1])
        return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))
