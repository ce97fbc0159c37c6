"""Evaluate a detector on a split: AP50 over non-hard faces and over faces >= 16 px at the device input.

Images go through `gateway.imaging.letterbox_bytes`, the gateway's own path, so the numbers transfer to
the product. Usage:

    python -m training.evaluate --checkpoint training/checkpoints/best.pt [--int] [--split dev] [--pr pr.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gateway.imaging import letterbox_bytes
from training.data import DEFAULT_DATA, Record, load_split, xywh_to_xyxy
from training.metrics import APAccumulator

SMALL_FACE_PX = 16.0

Detector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # frame -> (xyxy frame px, scores)


def evaluate(detect: Detector, records: list[Record], progress: bool = True) -> dict[str, object]:
    """Run `detect` on every record; AP50 over all non-hard faces and over faces >= 16 px."""
    all_faces, big_faces = APAccumulator(), APAccumulator()
    t0 = time.time()
    for i, record in enumerate(records):
        frame, plan = letterbox_bytes(record.path.read_bytes())
        boxes, scores = detect(frame)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1) if len(boxes) else np.zeros((0, 4))
        det = xywh_to_xyxy(plan.to_source(xywh))
        gt = xywh_to_xyxy(record.boxes)
        all_faces.add(det, scores, gt, record.hard)
        small = record.boxes[:, 2] * plan.scale_x < SMALL_FACE_PX
        big_faces.add(det, scores, gt, record.hard | small)
        if progress and (i + 1) % 50 == 0:
            print(f"  {i + 1}/{len(records)} images, {(i + 1) / (time.time() - t0):.1f} img/s", file=sys.stderr)
    return {
        "images": len(records),
        "ap50": all_faces.ap(),
        "ap50_16px": big_faces.ap(),
        "faces": all_faces.n_faces,
        "faces_16px": big_faces.n_faces,
        "_curves": {"all": all_faces.curve(), "16px": big_faces.curve()},
    }


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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    records = load_split(args.split, args.data)
    if args.limit:
        records = records[: args.limit]
    detect = int_detector(args.model_dir, args.checkpoint) if args.integer else float_detector(args.checkpoint)
    result = evaluate(detect, records)
    kind = "integer" if args.integer else "float"
    if args.pr:
        write_pr_curve(result, args.pr, f"RNNPool-Face-M4 ({kind}) on {args.split}")
    summary = {k: v for k, v in result.items() if not k.startswith("_")} | {"model": kind, "split": args.split}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{kind} model on {args.split} ({summary['images']} images)")
        print(f"  AP50, all non-hard faces ({summary['faces']}): {summary['ap50']:.4f}")
        print(f"  AP50, faces >= 16 px at 320x320 ({summary['faces_16px']}): {summary['ap50_16px']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
