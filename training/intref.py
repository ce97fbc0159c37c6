"""Bit-exact integer reference of RNNPool-Face-M4 (numpy only, no torch).

This is the golden model for the firmware engine: every stage here is specified in integers, and the C
engine must reproduce each stage's output exactly (docs/model-format.md has the same rules in prose).
Whole feature maps are computed at once here; the firmware streams rows, which gives the same numbers
because every output element depends only on the integer inputs listed below.

Conventions
- Tensors are HWC. Activations int8, symmetric (zero point 0). Accumulators int32.
- Requantization `rq(acc, m, s) = (acc * m + 2**(s-1)) >> s` in 64-bit arithmetic with an arithmetic
  (flooring) shift; m in [2**30, 2**31), s in [1, 62]. Then saturate or clamp.
- FastGRNN hidden state int16 in Q12; pre-activations int32 in Q10; sigmoid/tanh from 257-entry
  int16 Q15 tables over [-8, 8) with linear interpolation between entries.
- Boxes in 1/16 pixel (Q4) of the 320x320 frame; scores Q15 probabilities.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.boxes import HEADS, MAX_BOXES, NMS_IOU, SCORE_MIN, TOP_K

Params = dict[str, np.ndarray]

FRAME = 320
H_FRAC_BITS = 12  # FastGRNN hidden state Q12
PRE_FRAC_BITS = 10  # FastGRNN pre-activation Q10
LUT_MIN = -8 << PRE_FRAC_BITS
LUT_STEP_BITS = 6  # table step 2**6 in Q10 = 1/16
LUT_SIZE = 257
BOX_FRAC_BITS = 4
SCORE_MIN_Q15 = round(SCORE_MIN * 32768)
# IoU > 0.4  <=>  5 * inter > 2 * union: NMS_IOU as a ratio of small integers.
NMS_NUM, NMS_DEN = 2, 5
assert abs(NMS_NUM / NMS_DEN - NMS_IOU) < 1e-12


# ---------------------------------------------------------------------------------------------------
# Primitives


def rq(acc: np.ndarray, m: np.ndarray | int, s: np.ndarray | int) -> np.ndarray:
    """Fixed-point requantization (acc * m) / 2**s, rounded half up, in int64."""
    acc = np.asarray(acc, dtype=np.int64)
    m = np.asarray(m, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    return (acc * m + (np.int64(1) << (s - 1))) >> s


def sat(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(x, lo, hi)


def lut(table: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Q15 f(v) for Q10 v: clamp to [-8, 8), index by 1/16 steps, interpolate linearly."""
    u = np.clip(np.asarray(v, dtype=np.int64), LUT_MIN, -LUT_MIN - 1) - LUT_MIN
    idx, frac = u >> LUT_STEP_BITS, u & ((1 << LUT_STEP_BITS) - 1)
    t = table.astype(np.int64)
    lo, hi = t[idx], t[idx + 1]
    return lo + (((hi - lo) * frac + (1 << (LUT_STEP_BITS - 1))) >> LUT_STEP_BITS)


def lut_tables() -> tuple[np.ndarray, np.ndarray]:
    """The model's sigmoid and tanh tables: entry k is f((k * 64 - 8192) / 1024) in Q15."""
    v = (LUT_MIN + (np.arange(LUT_SIZE) << LUT_STEP_BITS)) / float(1 << PRE_FRAC_BITS)
    sig = np.clip(np.rint(32768.0 / (1.0 + np.exp(-v))), -32767, 32767).astype(np.int16)
    tanh = np.clip(np.rint(32768.0 * np.tanh(v)), -32767, 32767).astype(np.int16)
    return sig, tanh


def isqrt(n: np.ndarray) -> np.ndarray:
    """Exact floor(sqrt(n)) for non-negative integers below 2**52."""
    n = np.asarray(n, dtype=np.int64)
    r = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > n, r - 1, r)
    return np.where((r + 1) * (r + 1) <= n, r + 1, r)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer matmul through float64 BLAS (all partial sums here stay far below 2**53)."""
    return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def conv3x3(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """x (H, W, Cin) int8, w (Cout, 3, 3, Cin) -> int64 (Ho, Wo, Cout); zero padding 1."""
    h, wd, cin = x.shape
    xp = np.pad(x.astype(np.int64), ((1, 1), (1, 1), (0, 0)))
    ho, wo = (h - 1) // stride + 1, (wd - 1) // stride + 1
    cols = [xp[ky : ky + stride * ho : stride, kx : kx + stride * wo : stride] for ky in range(3) for kx in range(3)]
    patches = np.concatenate(cols, axis=2).reshape(ho * wo, 9 * cin)
    return matmul(patches, w.reshape(w.shape[0], -1).T).reshape(ho, wo, -1)


def depthwise3x3(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """x (H, W, C) int8, w (C, 3, 3) -> int64 (Ho, Wo, C); zero padding 1."""
    h, wd, _ = x.shape
    xp = np.pad(x.astype(np.int64), ((1, 1), (1, 1), (0, 0)))
    ho, wo = (h - 1) // stride + 1, (wd - 1) // stride + 1
    acc = np.zeros((ho, wo, x.shape[2]), dtype=np.int64)
    for ky in range(3):
        for kx in range(3):
            acc += xp[ky : ky + stride * ho : stride, kx : kx + stride * wo : stride] * w[:, ky, kx].astype(np.int64)
    return acc


def pointwise(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x (H, W, Cin), w (Cout, Cin) -> int64 (H, W, Cout)."""
    return matmul(x.reshape(-1, x.shape[2]), w.T).reshape(x.shape[0], x.shape[1], -1)


def requant_layer(p: Params, name: str, acc: np.ndarray) -> np.ndarray:
    """acc + bias, per-channel rq, clamp to [lo, hi] -> int8."""
    y = rq(acc + p[f"{name}.b"].astype(np.int64), p[f"{name}.m"], p[f"{name}.s"])
    return sat(y, int(p[f"{name}.lo"]), int(p[f"{name}.hi"])).astype(np.int8)


# ---------------------------------------------------------------------------------------------------
# FastGRNN


def fastgrnn(p: Params, name: str, seq: np.ndarray, reverse: bool = False) -> np.ndarray:
    """seq (N, T, n_in) int8 or int16 -> final hidden state (N, n_hidden) int16 Q12."""
    W, U = p[f"{name}.W"], p[f"{name}.U"]
    n, steps = seq.shape[0], seq.shape[1]
    h = np.zeros((n, W.shape[0]), dtype=np.int64)
    sig, tanh = p["lut.sigmoid"], p["lut.tanh"]
    zeta, nu = int(p[f"{name}.zeta"]), int(p[f"{name}.nu"])
    wx_all = matmul(seq.reshape(n * steps, -1), W.T).reshape(n, steps, -1)
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        pre = rq(wx_all[:, t], p[f"{name}.mw"], p[f"{name}.sw"]) + rq(matmul(h, U.T), p[f"{name}.mu"], p[f"{name}.su"])
        z = lut(sig, pre + p[f"{name}.bz"])
        c = lut(tanh, pre + p[f"{name}.bc"])
        coef = ((zeta * (32768 - z)) >> 15) + nu
        h = sat((8 * z * h + coef * c + (1 << 17)) >> 18, -32768, 32767)
    return h.astype(np.int16)


def rnnpool(p: Params, x: np.ndarray) -> np.ndarray:
    """x (160, 160, 4) int8 -> (39, 39, 64) int16 Q12: [rows fwd, rows bwd, cols fwd, cols bwd]."""
    h, w, c = x.shape
    patch, stride = 8, 4
    ny, nx = (h - patch) // stride + 1, (w - patch) // stride + 1
    starts_x = np.arange(nx) * stride
    starts_y = np.arange(ny) * stride
    # RNN1 once per row segment (row y, columns [4j, 4j+8)) and per column segment.
    rows = np.stack([x[:, s : s + patch] for s in starts_x], axis=1)  # (H, nx, 8, C)
    row_sum = fastgrnn(p, "rnn1", rows.reshape(h * nx, patch, c)).reshape(h, nx, -1)
    cols = np.stack([x[s : s + patch].transpose(1, 0, 2) for s in starts_y], axis=0)  # (ny, W, 8, C)
    col_sum = fastgrnn(p, "rnn1", cols.reshape(ny * w, patch, c)).reshape(ny, w, -1)
    h1 = row_sum.shape[2]
    patch_rows = np.stack([row_sum[s : s + patch] for s in starts_y], axis=0)  # (ny, 8, nx, h1)
    patch_rows = patch_rows.transpose(0, 2, 1, 3).reshape(ny * nx, patch, h1)
    patch_cols = np.stack([col_sum[:, s : s + patch] for s in starts_x], axis=1)  # (ny, nx, 8, h1)
    patch_cols = patch_cols.reshape(ny * nx, patch, h1)
    out = np.concatenate(
        [
            fastgrnn(p, "rnn2", patch_rows),
            fastgrnn(p, "rnn2", patch_rows, reverse=True),
            fastgrnn(p, "rnn2", patch_cols),
            fastgrnn(p, "rnn2", patch_cols, reverse=True),
        ],
        axis=1,
    )
    return out.reshape(ny, nx, -1)


# ---------------------------------------------------------------------------------------------------
# Network


BLOCKS = ((64, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1))  # (c_in, c_out, stride)


def mbconv(p: Params, k: int, x: np.ndarray) -> dict[str, np.ndarray]:
    name = f"block{k}"
    c_in, c_out, stride = BLOCKS[k - 1]
    e = requant_layer(p, f"{name}.expand", pointwise(x, p[f"{name}.expand.w"]))
    d = requant_layer(p, f"{name}.depthwise", depthwise3x3(e, p[f"{name}.depthwise.w"], stride))
    y = requant_layer(p, f"{name}.project", pointwise(d, p[f"{name}.project.w"]))
    if stride == 1 and c_in == c_out:
        y = sat(
            rq(y, p[f"{name}.res.mp"], p[f"{name}.res.sp"]) + rq(x, p[f"{name}.res.mx"], p[f"{name}.res.sx"]), -128, 127
        ).astype(np.int8)
    return {f"{name}.expand": e, f"{name}.depthwise": d, f"{name}.out": y}


def l2norm(p: Params, k: int, x: np.ndarray) -> np.ndarray:
    """Per pixel: y_c = G_c * q_c / ||q|| with ||q|| from an exact integer square root."""
    q = x.astype(np.int64)
    ss = np.sum(q * q, axis=2, keepdims=True)
    norm = isqrt(ss << 10)  # floor(32 * sqrt(ss))
    recip = ((1 << 30) + (norm >> 1)) // np.maximum(norm, 1)  # ~ 2**25 / sqrt(ss)
    y = rq(q * recip, p[f"norm{k}.m"], p[f"norm{k}.s"])
    return np.where(ss > 0, sat(y, -128, 127), 0).astype(np.int8)


def forward(p: Params, frame: np.ndarray) -> dict[str, np.ndarray]:
    """Every stage's output for one (320, 320) uint8 frame."""
    out: dict[str, np.ndarray] = {}
    x = (frame.astype(np.int16) - 128).astype(np.int8)[:, :, None]
    out["conv1"] = requant_layer(p, "conv1", conv3x3(x, p["conv1.w"], 2))
    pooled = rnnpool(p, out["conv1"])
    out["rnnpool.h"] = pooled
    q = sat(rq(pooled, p["pool.m"], p["pool.s"]), -128, 127).astype(np.int8)
    out["rnnpool"] = np.pad(q, ((0, 1), (0, 1), (0, 0)), mode="edge")
    x = out["rnnpool"]
    for k in range(1, 5):
        out |= mbconv(p, k, x)
        x = out[f"block{k}.out"]
        source = x
        if k < 4:
            source = out[f"norm{k}"] = l2norm(p, k, x)
        out[f"head{k}"] = requant_layer(p, f"head{k}", conv3x3(source, p[f"head{k}.w"], 1))
    return out


# ---------------------------------------------------------------------------------------------------
# Decoding, top-K, NMS


@dataclass
class Detections:
    """Final boxes in Q4 pixels of the 320x320 frame (x, y, w, h) with Q15 scores."""

    boxes_q4: np.ndarray  # (N, 4) int32
    scores_q15: np.ndarray  # (N,) int32
    anchors: np.ndarray  # (N,) int32 global anchor index
    candidates: int = 0  # anchors at or above the score threshold (before top-K)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def boxes_px(self) -> np.ndarray:
        return self.boxes_q4.astype(np.float64) / (1 << BOX_FRAC_BITS)

    def scores(self) -> np.ndarray:
        return self.scores_q15.astype(np.float64) / 32768.0


def decode_head(p: Params, k: int, raw: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One head's raw int8 output (G, G, 4 + classes) -> (scores Q15, boxes Q4 xyxy, anchor idx)."""
    head = HEADS[k - 1]
    g = raw.shape[0]
    r = raw.reshape(g * g, -1).astype(np.int64)
    bg = r[:, 4:-1].max(axis=1)
    diff = r[:, -1] - bg
    score = lut(p["lut.sigmoid"], rq(diff, p[f"head{k}.score_m"], p[f"head{k}.score_s"]))
    ys, xs = np.divmod(np.arange(g * g, dtype=np.int64), g)
    half = head.step << (BOX_FRAC_BITS - 1)
    cx = (xs * head.step << BOX_FRAC_BITS) + half + rq(r[:, 0], p[f"head{k}.dc_m"], p[f"head{k}.dc_s"])
    cy = (ys * head.step << BOX_FRAC_BITS) + half + rq(r[:, 1], p[f"head{k}.dc_m"], p[f"head{k}.dc_s"])
    wlut = p[f"head{k}.wlut"].astype(np.int64)
    bw, bh = wlut[r[:, 2] + 128], wlut[r[:, 3] + 128]
    x1, y1 = cx - (bw >> 1), cy - (bh >> 1)
    limit = FRAME << BOX_FRAC_BITS
    xyxy = np.stack([sat(x1, 0, limit), sat(y1, 0, limit), sat(x1 + bw, 0, limit), sat(y1 + bh, 0, limit)], axis=1)
    return score, xyxy, offset + np.arange(g * g, dtype=np.int64)


def select(scores: np.ndarray, xyxy: np.ndarray, anchors: np.ndarray) -> Detections:
    """Threshold, top-K by (score desc, anchor asc), greedy NMS in integers, at most MAX_BOXES."""
    keep = scores >= SCORE_MIN_Q15
    s, b, a = scores[keep], xyxy[keep], anchors[keep]
    order = np.lexsort((a, -s))[:TOP_K]
    s, b, a = s[order], b[order], a[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(len(s), dtype=bool)
    kept: list[int] = []
    for i in range(len(s)):
        if suppressed[i]:
            continue
        kept.append(i)
        if len(kept) == MAX_BOXES:
            break
        rest = np.arange(i + 1, len(s))
        iw = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        ih = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = iw * ih
        union = area[i] + area[rest] - inter
        suppressed[rest[NMS_DEN * inter > NMS_NUM * union]] = True
    idx = np.array(kept, dtype=np.int64)
    bk = b[idx] if len(idx) else np.zeros((0, 4), dtype=np.int64)
    boxes = np.stack([bk[:, 0], bk[:, 1], bk[:, 2] - bk[:, 0], bk[:, 3] - bk[:, 1]], axis=1)
    return Detections(
        boxes.astype(np.int32), s[idx].astype(np.int32), a[idx].astype(np.int32), candidates=int(keep.sum())
    )


def detect(p: Params, stages: dict[str, np.ndarray]) -> Detections:
    scores, boxes, anchors = [], [], []
    offset = 0
    for k in range(1, 5):
        s, b, a = decode_head(p, k, stages[f"head{k}"], offset)
        offset += len(s)
        scores.append(s)
        boxes.append(b)
        anchors.append(a)
    return select(np.concatenate(scores), np.concatenate(boxes), np.concatenate(anchors))


# ---------------------------------------------------------------------------------------------------
# Model object


def params_hash(p: Params) -> str:
    """SHA-256 over names, dtypes, shapes and bytes in sorted order: the model's identity."""
    h = hashlib.sha256()
    for name in sorted(p):
        a = np.ascontiguousarray(p[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class IntegerModel:
    def __init__(self, params: Params) -> None:
        self.params = params
        self.hash = params_hash(params)

    @classmethod
    def load(cls, path: Path) -> IntegerModel:
        path = Path(path)
        if path.is_dir():
            path = path / "rnnpool_face_int.npz"
        with np.load(path) as data:
            return cls({k: data[k] for k in data.files})

    @classmethod
    def from_checkpoint(cls, checkpoint: Path | None) -> IntegerModel:
        from training.quantize import quantize_checkpoint  # needs torch

        return cls(quantize_checkpoint(checkpoint))

    def stages(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        return forward(self.params, frame)

    def run(self, frame: np.ndarray) -> tuple[dict[str, np.ndarray], Detections]:
        stages = forward(self.params, frame)
        return stages, detect(self.params, stages)

    def detect_xyxy(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Evaluation interface: (xyxy boxes in frame pixels, float scores)."""
        det = self.run(frame)[1]
        b = det.boxes_px()
        return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1), det.scores()
