"""Train RNNPool-Face-M4 (float). Resumable; keeps the best checkpoint by dev AP50 (>= 16 px).

    python -m training.train --epochs 30 [--out training/runs/main] [--resume]

Writes `last.pt` every epoch (model, optimiser, scheduler, RNG state) and `best.pt`; copy the best one
to `training/checkpoints/best.pt` to ship it. With `--ema D` the weights evaluated and kept are an
exponential moving average (decay D per step) of the trained ones.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import shutil
import sys
import threading
import time
from pathlib import Path
from queue import Queue

import numpy as np
import torch

from training.data import DEFAULT_DATA, MIN_TRAIN_FACE, PLAIN_FRACTION, ZOOM_PX, FaceAugmenter, load_split
from training.evaluate import evaluate
from training.infer import FloatDetector
from training.loss import match, multibox_loss
from training.model import RNNPoolFace, image_to_tensor


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batches(augmenter: FaceAugmenter, order: np.ndarray, batch_size: int):
    """Yield (frames, labels, targets) tensors; runs in a helper thread so decoding overlaps compute."""
    for start in range(0, len(order) - batch_size + 1, batch_size):
        frames, labels, targets = [], [], []
        for i in order[start : start + batch_size]:
            frame, boxes, ignore = augmenter.sample(int(i))
            lab, tgt = match(boxes, ignore)
            frames.append(frame)
            labels.append(lab)
            targets.append(tgt)
        yield (
            torch.from_numpy(np.stack(frames)),
            torch.from_numpy(np.stack(labels)),
            torch.from_numpy(np.stack(targets)),
        )


def prefetch(iterator, depth: int = 3):
    queue: Queue = Queue(maxsize=depth)
    done = object()

    def worker() -> None:
        for item in iterator:
            queue.put(item)
        queue.put(done)

    threading.Thread(target=worker, daemon=True).start()
    while (item := queue.get()) is not done:
        yield item


class WeightAverage:
    """Exponential moving average of a model's parameters and buffers (BN statistics included).

    The late epochs of a run wander around a minimum; their average generalises better than any one of
    them, and the per-epoch dev AP it gives is much less noisy, so "best epoch" means something."""

    def __init__(self, model: RNNPoolFace, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        averaged = self.model.state_dict()
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                averaged[name].lerp_(value, 1.0 - self.decay)
            else:
                averaged[name].copy_(value)


def progress_line(epoch: int, step: int, steps: int, loss: float, rate: float, eta_s: float) -> str:
    width = 24
    filled = int(width * step / max(steps, 1))
    eta = time.strftime("%H:%M:%S", time.gmtime(max(eta_s, 0)))
    bar = "#" * filled + "." * (width - filled)
    return f"\repoch {epoch} [{bar}] {step}/{steps} loss {loss:.3f} {rate:.1f} img/s ETA {eta}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("training/runs/main"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--init", type=Path, help="start from these weights (fine-tuning)")
    parser.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N dev images only")
    parser.add_argument(
        "--minutes",
        type=float,
        default=0,
        help="train for this wall-clock budget instead of a fixed number of epochs: the learning rate "
        "follows a cosine over elapsed time, so the run anneals fully however fast the machine is",
    )
    parser.add_argument(
        "--ema", type=float, default=0, help="evaluate and keep a moving average of the weights with this decay"
    )
    parser.add_argument(
        "--zoom-px",
        type=float,
        nargs=2,
        default=ZOOM_PX,
        metavar=("LO", "HI"),
        help="zoomed crops put the chosen face at a width drawn log-uniformly from LO..HI device pixels",
    )
    parser.add_argument(
        "--plain-fraction",
        type=float,
        default=PLAIN_FRACTION,
        help="share of frames that are the plain letterboxed image",
    )
    parser.add_argument(
        "--min-face",
        type=float,
        default=MIN_TRAIN_FACE,
        help="faces whose smaller side is under this (device px) after augmentation are ignored in matching",
    )
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train = load_split("train", args.data)
    dev = load_split("dev", args.data)
    if args.eval_limit:
        dev = dev[: args.eval_limit]
    device = torch.device(args.device)
    model = RNNPoolFace().to(device)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True)["model"])
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimiser = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0}], lr=args.lr
    )
    steps_per_epoch = len(train) // args.batch
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.05, final_div_factor=100
    )
    budget_s = args.minutes * 60
    start_epoch, best_ap, history, spent_s = 0, -1.0, [], 0.0
    last_path = args.out / "last.pt"
    ema_state = None
    if args.resume and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        start_epoch, best_ap, history = state["epoch"] + 1, state["best_ap"], state["history"]
        spent_s = state.get("spent_s", 0.0)
        torch.set_rng_state(state["torch_rng"])
        ema_state = state.get("ema")
        print(f"resumed at epoch {start_epoch}, best dev AP50(>=16px) {best_ap:.4f}", file=sys.stderr)

    average = WeightAverage(model, args.ema) if args.ema else None
    if average and ema_state is not None:
        average.model.load_state_dict(ema_state)
    t_start = time.time() - spent_s
    epochs = range(start_epoch, 10**6) if budget_s else range(start_epoch, args.epochs)
    for epoch in epochs:
        # Per-epoch seeds make a resumed run see the same samples as an uninterrupted one.
        augmenter = FaceAugmenter(
            train,
            seed=args.seed * 1000 + epoch,
            plain_fraction=args.plain_fraction,
            zoom_px=tuple(args.zoom_px),
            min_face=args.min_face,
        )
        order = np.random.default_rng(args.seed * 1000 + epoch).permutation(len(train))
        model.train()
        t0, seen, running = time.time(), 0, 0.0
        for step, (frames, labels, targets) in enumerate(prefetch(batches(augmenter, order, args.batch)), 1):
            loc, conf = model(image_to_tensor(frames).to(device))
            loc_loss, conf_loss = multibox_loss(loc, conf, labels.to(device), targets.to(device))
            loss = loc_loss + conf_loss
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            if average:
                average.update(model)
            if budget_s:
                frac = min((time.time() - t_start) / budget_s, 1.0)
                for group in optimiser.param_groups:
                    group["lr"] = args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
            else:
                schedule.step()
            seen += len(frames)
            running = loss.item() if step == 1 else 0.98 * running + 0.02 * loss.item()
            rate = seen / (time.time() - t0)
            if budget_s:
                eta = budget_s - (time.time() - t_start)
            else:
                eta = (steps_per_epoch - step + (args.epochs - epoch - 1) * steps_per_epoch) * args.batch / rate
            print(progress_line(epoch, step, steps_per_epoch, running, rate, eta), end="", file=sys.stderr, flush=True)
            if budget_s and time.time() - t_start >= budget_s:
                break
        print(file=sys.stderr)
        kept = average.model if average else model
        kept.eval()
        result = evaluate(FloatDetector(kept.cpu()), dev, progress=False)
        kept.to(device)
        ap, ap16 = float(result["ap50"]), float(result["ap50_16px"])  # type: ignore[arg-type]
        history.append(
            {"epoch": epoch, "loss": running, "dev_ap50": ap, "dev_ap50_16px": ap16, "minutes": (time.time() - t0) / 60}
        )
        print(
            f"epoch {epoch}: loss {running:.3f} dev AP50 {ap:.4f} AP50(>=16px) {ap16:.4f}", file=sys.stderr, flush=True
        )
        if ap16 > best_ap:
            best_ap = ap16
            torch.save({"model": kept.state_dict(), "epoch": epoch, "dev": history[-1]}, args.out / "best.tmp")
            shutil.move(args.out / "best.tmp", args.out / "best.pt")
        torch.save(
            {
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "epoch": epoch,
                "best_ap": best_ap,
                "history": history,
                "torch_rng": torch.get_rng_state(),
                "ema": average.model.state_dict() if average else None,
                "spent_s": time.time() - t_start,
            },
            args.out / "last.tmp",
        )
        shutil.move(args.out / "last.tmp", last_path)
        (args.out / "history.json").write_text(json.dumps(history, indent=1))
        if budget_s and time.time() - t_start >= budget_s:
            print("time budget spent", file=sys.stderr)
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
