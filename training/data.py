"""Face dataset (../shared/datasets/faces) and augmentation producing 320x320 mono device frames."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gateway.imaging import RESAMPLE, letterbox_image

DEFAULT_DATA = Path(
    os.environ.get("RNNPOOL_DATA", Path(__file__).resolve().parents[1].parent / "shared/datasets/faces")
)
FRAME = 320
# Faces smaller than this at the device input cannot be matched reliably by the 8 px anchors;
# augmentation marks them "ignore" rather than teaching the model that they are background.
MIN_TRAIN_FACE = 5.0
# Zoomed crops put the chosen face at a width drawn log-uniformly from this range (device px); the rest
# of the frames are the plain letterboxed picture, as the device sees it.
ZOOM_PX = (10.0, 120.0)
PLAIN_FRACTION = 0.25


@dataclass(frozen=True)
class Record:
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) x, y, w, h in original pixels
    hard: np.ndarray  # (N,) bool
    source: str


def load_split(split: str, root: Path = DEFAULT_DATA) -> list[Record]:
    records = []
    with open(root / f"{split}.jsonl") as f:
        for line in f:
            row = json.loads(line)
            boxes = np.asarray(row["boxes"], dtype=np.float64).reshape(-1, 4)
            records.append(
                Record(
                    path=root / row["image"],
                    width=int(row["width"]),
                    height=int(row["height"]),
                    boxes=boxes,
                    hard=np.asarray(row["hard"], dtype=bool).reshape(-1),
                    source=row.get("source", ""),
                )
            )
    return records


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


class FaceAugmenter:
    """Random crop/zoom around faces, flips, brightness/contrast -> (frame, boxes xyxy, ignore)."""

    def __init__(
        self,
        records: list[Record],
        seed: int,
        plain_fraction: float = PLAIN_FRACTION,
        zoom_px: tuple[float, float] = ZOOM_PX,
        min_face: float = MIN_TRAIN_FACE,
    ) -> None:
        self.records = records
        self.rng = np.random.default_rng(seed)
        self.plain_fraction = plain_fraction
        self.zoom_px = zoom_px
        self.min_face = min_face
        self._cache: dict[Path, Image.Image] = {}

    def image(self, record: Record) -> Image.Image:
        img = self._cache.get(record.path)
        if img is None:
            with Image.open(record.path) as f:
                img = f.convert("L")
                img.load()
            self._cache[record.path] = img
        return img

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        record = self.records[index]
        img = self.image(record)
        rng = self.rng
        if rng.random() < self.plain_fraction or len(record.boxes) == 0:
            frame, plan = letterbox_image(img, FRAME, FRAME)
            boxes = xywh_to_xyxy(plan.to_frame(record.boxes))
        else:
            frame, boxes = self._zoom_crop(img, record)
        ignore = record.hard.copy()
        if rng.random() < 0.5:
            frame = frame[:, ::-1]
            boxes = np.stack([FRAME - boxes[:, 2], boxes[:, 1], FRAME - boxes[:, 0], boxes[:, 3]], axis=1)
        frame = self._photometric(frame)
        boxes, ignore = self._clip(boxes, ignore)
        return np.ascontiguousarray(frame), boxes.astype(np.float32), ignore

    def _zoom_crop(self, img: Image.Image, record: Record) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        letterbox_scale = FRAME / max(record.width, record.height)
        candidates = np.flatnonzero(~record.hard) if (~record.hard).any() else np.arange(len(record.boxes))
        face = record.boxes[rng.choice(candidates)]
        # Small-face aware: pick the chosen face's size at the device log-uniformly within `zoom_px`, so
        # tiny and large faces are both common, but never zoom out below half the letterbox scale or in
        # beyond 4x.
        target = math.exp(rng.uniform(math.log(self.zoom_px[0]), math.log(self.zoom_px[1])))
        scale = float(np.clip(target / max(face[2], 1.0), 0.5 * letterbox_scale, 4.0 * letterbox_scale))
        win = FRAME / scale
        # Window placement: the chosen face anywhere inside it (if it fits).
        fx0, fy0, fw, fh = face
        lo_x, hi_x = fx0 + fw - win, fx0
        lo_y, hi_y = fy0 + fh - win, fy0
        x0 = rng.uniform(min(lo_x, hi_x), max(lo_x, hi_x))
        y0 = rng.uniform(min(lo_y, hi_y), max(lo_y, hi_y))
        # Resample the part of the window that lies inside the image; the rest stays black.
        ix0, iy0 = max(x0, 0.0), max(y0, 0.0)
        ix1, iy1 = min(x0 + win, record.width), min(y0 + win, record.height)
        frame = np.zeros((FRAME, FRAME), dtype=np.uint8)
        ox0, oy0 = round((ix0 - x0) * scale), round((iy0 - y0) * scale)
        ow, oh = round((ix1 - ix0) * scale), round((iy1 - iy0) * scale)
        ow, oh = min(ow, FRAME - ox0), min(oh, FRAME - oy0)
        if ow > 0 and oh > 0 and ix1 > ix0 and iy1 > iy0:
            patch = img.resize((ow, oh), RESAMPLE, box=(ix0, iy0, ix1, iy1))
            frame[oy0 : oy0 + oh, ox0 : ox0 + ow] = np.asarray(patch)
            sx, sy = ow / (ix1 - ix0), oh / (iy1 - iy0)
        else:
            sx = sy = scale
        b = xywh_to_xyxy(record.boxes)
        boxes = np.stack(
            [
                (b[:, 0] - ix0) * sx + ox0,
                (b[:, 1] - iy0) * sy + oy0,
                (b[:, 2] - ix0) * sx + ox0,
                (b[:, 3] - iy0) * sy + oy0,
            ],
            axis=1,
        )
        return frame, boxes

    def _photometric(self, frame: np.ndarray) -> np.ndarray:
        rng = self.rng
        f = frame.astype(np.float32)
        if rng.random() < 0.8:
            f = (f - 128.0) * rng.uniform(0.6, 1.4) + 128.0 + rng.uniform(-40, 40)
        if rng.random() < 0.3:
            g = rng.uniform(0.7, 1.4)
            f = 255.0 * (np.clip(f, 0, 255) / 255.0) ** g
        return np.clip(np.rint(f), 0, 255).astype(np.uint8)

    def _clip(self, boxes: np.ndarray, ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
        clipped = np.clip(boxes, 0, FRAME)
        wh = np.clip(clipped[:, 2:] - clipped[:, :2], 0, None)
        visible = np.prod(wh, axis=1) / np.maximum(area, 1e-6)
        keep = (wh[:, 0] >= 1) & (wh[:, 1] >= 1)
        # Mostly cut off or too small to learn from: neither face nor background.
        ignore = ignore | (visible < 0.5) | (wh.min(axis=1) < self.min_face)
        return clipped[keep], ignore[keep]
