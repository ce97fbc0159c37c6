"""Evaluate a detector on a split: AP50 over non-hard faces and over faces >= 16 px at the device input.

Images go through `gateway.imaging.letterbox_bytes`, the gateway's own path, so the numbers transfer to
the product. Usage:

    python -m training.evaluate [--checkpoint CKPT | --int [--model-dir DIR]] [--views 1|2] [--split dev] [--pr pr.png]

`--views` defaults to the product's setting (`gateway.views.DEFAULT_VIEWS`): each image is detected
on the frame and on its shifted mirror and the boxes are fused, exactly as the gateway does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from gateway.imaging import letterbox_bytes, plan_letterbox
from gateway.views import DEFAULT_VIEWS, MAX_VIEWS, check_views, fuse_views, view_frame
from training.data import DEFAULT_DATA, Record, load_split, xywh_to_xyxy
from training.metrics import APAccumulator

SMALL_FACE_PX = 16.0

Detector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # frame -> (xyxy frame px, scores)


def detect_fused(detect: Detector, frame: np.ndarray, views: int) -> tuple[np.ndarray, np.ndarray]:
    """The product's detection: `views` passes fused as the gateway fuses them -> (x, y, w, h frame px, scores)."""
    per_view = []
    for view in range(check_views(views)):
        boxes, scores = detect(view_frame(frame, view))
        xyxy = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        per_view.append((np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1), scores))
    return fuse_views(per_view, frame.shape)


class _Scores:
    """AP accumulators for both face sets of the issue: all non-hard faces, and faces >= 16 px."""

    def __init__(self) -> None:
        self.all_faces, self.big_faces = APAccumulator(), APAccumulator()

    def add(self, record: Record, det_xywh: np.ndarray, scores: np.ndarray, frame_scale: float) -> None:
        """Detections in the record's original pixels; `frame_scale` maps them to the device frame."""
        det, gt = xywh_to_xyxy(det_xywh), xywh_to_xyxy(record.boxes)
        self.all_faces.add(det, scores, gt, record.hard)
        small = record.boxes[:, 2] * frame_scale < SMALL_FACE_PX
        self.big_faces.add(det, scores, gt, record.hard | small)

    def result(self, images: int, views: int) -> dict[str, object]:
        return {
            "images": images,
            "ap50": self.all_faces.ap(),
            "ap50_16px": self.big_faces.ap(),
            "faces": self.all_faces.n_faces,
            "faces_16px": self.big_faces.n_faces,
            "views": views,
            "_curves": {"all": self.all_faces.curve(), "16px": self.big_faces.curve()},
        }


def evaluate(detect: Detector, records: list[Record], progress: bool = True, views: int = 1) -> dict[str, object]:
    """Run `detect` on every record; AP50 over all non-hard faces and over faces >= 16 px."""
    acc = _Scores()
    t0 = time.time()
    for i, record in enumerate(records):
        frame, plan = letterbox_bytes(record.path.read_bytes())
        xywh, scores = detect_fused(detect, frame, views)
        acc.add(record, plan.to_source(xywh), scores, plan.scale_x)
        if progress and (i + 1) % 50 == 0:
            print(f"  {i + 1}/{len(records)} images, {(i + 1) / (time.time() - t0):.1f} img/s", file=sys.stderr)
    return acc.result(len(records), views)


def evaluate_detections(lines: Iterable[str], records: list[Record]) -> dict[str, object]:
    """Score `rnnpool detect` output (JSON lines) against `records`, matched by resolved image path.

    An image of the split with no line, or with an error line, counts as one with no detections."""
    by_path: dict[Path, dict[str, Any]] = {}
    for line in lines:
        if line.strip():
            item = json.loads(line)
            by_path[Path(item["image"]).resolve()] = item
    acc = _Scores()
    missing, views = 0, set()
    for record in records:
        item = by_path.get(record.path.resolve())
        if item is None or "error" in item:
            missing += 1
            item = {"boxes": [], "width": record.width, "height": record.height}
        views.add(item.get("views", 1))
        boxes = item["boxes"]
        xywh = np.array([[b["x"], b["y"], b["w"], b["h"]] for b in boxes], dtype=np.float64).reshape(-1, 4)
        scores = np.array([b["score"] for b in boxes], dtype=np.float64)
        acc.add(record, xywh, scores, plan_letterbox(item["width"], item["height"]).scale_x)
    result = acc.result(len(records), max(views) if views else 0)
    result["images_without_answer"] = missing
    return result


def write_pr_curve(result: dict[str, object], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["_curves"]
    assert isinstance(curves, dict)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for name, label in (("all", "all non-hard"), ("16px", ">= 16 px")):
        recall, precision = curves[name]
        ap = result["ap50" if name == "all" else "ap50_16px"]
        ax.plot(recall, precision, label=f"{label}: AP50 {ap:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def float_detector(checkpoint: Path) -> Detector:
    from training.infer import FloatDetector

    return FloatDetector.from_checkpoint(checkpoint)


def int_detector(model_dir: Path | None, checkpoint: Path | None) -> Detector:
    from training.intref import IntegerModel

    model = IntegerModel.load(model_dir) if model_dir else IntegerModel.from_checkpoint(checkpoint)
    return model.detect_xyxy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("training/checkpoints/best.pt"))
    parser.add_argument("--int", dest="integer", action="store_true", help="evaluate the numpy integer reference")
    parser.add_argument(
        "--model-dir", type=Path, help="integer model from an export (quant.npz) instead of a checkpoint"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images")
    parser.add_argument("--pr", type=Path, help="write the precision-recall curve PNG here")
    parser.add_argument(
        "--views",
        type=int,
        choices=range(1, MAX_VIEWS + 1),
        default=DEFAULT_VIEWS,
        help=f"device passes fused per image, as `rnnpool detect --views` (default {DEFAULT_VIEWS}, the product's)",
    )
    parser.add_argument(
        "--detections",
        type=Path,
        help="score this `rnnpool detect` output (JSON lines, '-' for stdin) instead of running a model",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    records = load_split(args.split, args.data)
    if args.limit:
        records = records[: args.limit]
    if args.detections:
        text = sys.stdin.read() if str(args.detections) == "-" else args.detections.read_text()
        result = evaluate_detections(text.splitlines(), records)
        kind = "rnnpool detect"
    else:
        detect = int_detector(args.model_dir, args.checkpoint) if args.integer else float_detector(args.checkpoint)
        result = evaluate(detect, records, views=args.views)
        kind = "integer" if args.integer else "float"
    views = result["views"]
    assert isinstance(views, int)
    passes = "1 pass" if views == 1 else f"{views} views fused"
    if args.pr:
        write_pr_curve(result, args.pr, f"RNNPool-Face-M4 ({kind}, {passes}) on {args.split}")
    summary = {k: v for k, v in result.items() if not k.startswith("_")} | {"model": kind, "split": args.split}
    if args.json:
        print(json.dumps(summary))
    else:
        label = "output of rnnpool detect" if args.detections else f"{kind} model"
        print(f"{label}, {passes}, on {args.split} ({summary['images']} images)")
        print(f"  AP50, all non-hard faces ({summary['faces']}): {summary['ap50']:.4f}")
        print(f"  AP50, faces >= 16 px at 320x320 ({summary['faces_16px']}): {summary['ap50_16px']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
