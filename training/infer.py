"""Float-model inference: device frame -> boxes, with the same post-processing as the device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.boxes import MAX_BOXES, NMS_IOU, SCORE_MIN, TOP_K, anchors_cxcywh, decode, nms
from training.model import RNNPoolFace, image_to_tensor, load_checkpoint

ANCHORS = anchors_cxcywh()


def postprocess(loc: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """loc (A, 4), conf logits (A, 2) -> (xyxy frame px, scores) after top-K and NMS."""
    scores = 1.0 / (1.0 + np.exp(conf[:, 0] - conf[:, 1]))
    idx = np.flatnonzero(scores >= SCORE_MIN)
    idx = idx[np.lexsort((idx, -scores[idx]))][:TOP_K]
    boxes = np.clip(decode(loc[idx].astype(np.float64), ANCHORS[idx]), 0, 320)
    keep = nms(boxes, scores[idx], NMS_IOU, MAX_BOXES)
    return boxes[keep], scores[idx][keep]


class FloatDetector:
    def __init__(self, model: RNNPoolFace) -> None:
        self.model = model.eval()

    @classmethod
    def from_checkpoint(cls, path: Path) -> FloatDetector:
        return cls(load_checkpoint(path))

    @torch.no_grad()
    def raw(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        loc, conf = self.model(image_to_tensor(torch.from_numpy(np.asarray(frames)).reshape(-1, 320, 320)))
        return loc.numpy(), conf.numpy()

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        loc, conf = self.raw(frame[None])
        return postprocess(loc[0], conf[0])
