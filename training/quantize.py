"""Post-training quantization of a float checkpoint into the integer model of `training.intref`.

BatchNorm is folded into the convolutions; weights become int8 with one scale per output channel;
activation scales come from calibration on training images (max |x|, ReLU6 layers capped at 6);
every real multiplier becomes a fixed-point (m, s) pair. Deterministic: same checkpoint, same
calibration images -> same integers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gateway.imaging import letterbox_bytes
from training.boxes import HEADS, VARIANCE_CENTER, VARIANCE_SIZE
from training.data import DEFAULT_DATA, load_split
from training.intref import BOX_FRAC_BITS, H_FRAC_BITS, PRE_FRAC_BITS, Params, lut_tables
from training.model import ConvBN, L2Norm, MBConv, RNNPoolFace, image_to_tensor, load_checkpoint

CALIBRATION_STRIDE = 50  # every 50th training image (65 images)
L2NORM_RECIP_BITS = 25  # intref.l2norm: recip ~ 2**25 / sqrt(sum q^2)


def multiplier(real: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Real positive multipliers -> (m in [2**30, 2**31), s) with m * 2**-s ~ real."""
    r = np.atleast_1d(np.asarray(real, dtype=np.float64))
    ms, ss = np.zeros(r.shape, np.int32), np.ones(r.shape, np.int32)
    for i, v in enumerate(r.flat):
        if v <= 0:
            continue  # an all-zero channel: m = 0 gives 0
        f, e = math.frexp(v)
        m, s = round(f * (1 << 31)), 31 - e
        if m == 1 << 31:
            m, s = m >> 1, s - 1
        if s > 62:  # vanishingly small multiplier: lose low bits of m rather than overflow the shift
            m, s = m >> (s - 62), 62
        if s < 1:
            raise ValueError(f"multiplier {v} too large for fixed point")
        ms.flat[i], ss.flat[i] = m, s
    return ms, ss


def fold_bn(cb: ConvBN) -> tuple[np.ndarray, np.ndarray]:
    conv, bn = cb[0], cb[1]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    assert bn.running_var is not None and bn.running_mean is not None
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
    w = conv.weight.detach().double() * scale.view(-1, 1, 1, 1)
    b = bn.bias.detach().double() - bn.running_mean.detach().double() * scale
    return w.numpy(), b.numpy()


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (axis 0) symmetric int8."""
    flat = w.reshape(w.shape[0], -1)
    scale = np.abs(flat).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(flat / scale[:, None]), -127, 127).astype(np.int8).reshape(w.shape)
    return q, scale


class Calibrator:
    """Records max |x| per channel for every tap of the model."""

    def __init__(self) -> None:
        self.max: dict[str, np.ndarray] = {}

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        dims = [d for d in range(x.ndim) if d != 1] if x.ndim == 4 else list(range(x.ndim - 1))
        m = x.detach().abs().amax(dim=dims).double().numpy()
        self.max[name] = np.maximum(self.max.get(name, 0), m)
        return x

    def scale(self, name: str, cap: float | None = None) -> float:
        m = float(self.max[name].max())
        if cap is not None:
            m = min(m, cap)
        return max(m, 1e-6) / 127.0


def calibration_frames(data: Path = DEFAULT_DATA) -> np.ndarray:
    records = load_split("train", data)[::CALIBRATION_STRIDE]
    return np.stack([letterbox_bytes(r.path.read_bytes())[0] for r in records])


def quantize_model(model: RNNPoolFace, frames: np.ndarray) -> tuple[Params, dict[str, float]]:
    """-> (integer parameters, real scale of each activation stage, for diagnostics)."""
    model = model.eval()
    cal = Calibrator()
    model.tap = cal
    with torch.no_grad():
        for start in range(0, len(frames), 8):
            model(image_to_tensor(torch.from_numpy(frames[start : start + 8])))
    model.tap = lambda name, x: x

    p: Params = {}

    def layer(name: str, w: np.ndarray, b: np.ndarray, s_in: float, s_out: np.ndarray | float, relu6: bool) -> None:
        q, sw = quantize_weights(w)
        p[f"{name}.w"] = q
        p[f"{name}.b"] = np.rint(b / (s_in * sw)).astype(np.int32)
        p[f"{name}.m"], p[f"{name}.s"] = multiplier(s_in * sw / np.broadcast_to(s_out, sw.shape))
        p[f"{name}.lo"] = np.array(0 if relu6 else -128, np.int32)
        hi = min(127, round(6.0 / float(np.max(s_out)))) if relu6 else 127
        p[f"{name}.hi"] = np.array(hi, np.int32)

    s_in = 1.0 / 128.0
    # conv1: (4, 1, 3, 3) -> layout (Cout, 3, 3, Cin)
    w, b = fold_bn(model.conv1)
    s_c1 = cal.scale("conv1", 6.0)
    layer("conv1", w.transpose(0, 2, 3, 1), b, s_in, s_c1, relu6=True)

    # FastGRNNs
    for name, rnn, s_x in (("rnn1", model.rnnpool.rnn1, s_c1), ("rnn2", model.rnnpool.rnn2, 2.0**-H_FRAC_BITS)):
        qW, sW = quantize_weights(rnn.W.detach().double().numpy())
        qU, sU = quantize_weights(rnn.U.detach().double().numpy())
        p[f"{name}.W"], p[f"{name}.U"] = qW, qU
        p[f"{name}.mw"], p[f"{name}.sw"] = multiplier(sW * s_x * 2.0**PRE_FRAC_BITS)
        p[f"{name}.mu"], p[f"{name}.su"] = multiplier(sU * 2.0 ** (PRE_FRAC_BITS - H_FRAC_BITS))
        p[f"{name}.bz"] = np.rint(rnn.bias_gate.detach().double().numpy() * 2.0**PRE_FRAC_BITS).astype(np.int32)
        p[f"{name}.bc"] = np.rint(rnn.bias_update.detach().double().numpy() * 2.0**PRE_FRAC_BITS).astype(np.int32)
        p[f"{name}.zeta"] = np.array(round(32768 * float(torch.sigmoid(rnn.zeta.detach()))), np.int32)
        p[f"{name}.nu"] = np.array(round(32768 * float(torch.sigmoid(rnn.nu.detach()))), np.int32)
    s_pool = cal.scale("rnnpool")
    p["pool.m"], p["pool.s"] = (a[0] for a in multiplier(2.0**-H_FRAC_BITS / s_pool))

    # MBConv blocks
    s_x = s_pool
    for k, block in enumerate(model.blocks, 1):
        assert isinstance(block, MBConv)
        name = f"block{k}"
        s_e, s_d = cal.scale(f"{name}.expand", 6.0), cal.scale(f"{name}.depthwise", 6.0)
        w, b = fold_bn(block.expand)
        layer(f"{name}.expand", w[:, :, 0, 0], b, s_x, s_e, relu6=True)
        w, b = fold_bn(block.depthwise)
        layer(f"{name}.depthwise", w[:, 0], b, s_e, s_d, relu6=True)
        s_o = cal.scale(f"{name}.out")
        s_p = cal.scale(f"{name}.project") if block.residual else s_o
        w, b = fold_bn(block.project)
        layer(f"{name}.project", w[:, :, 0, 0], b, s_d, s_p, relu6=False)
        if block.residual:
            p[f"{name}.res.mp"], p[f"{name}.res.sp"] = (a[0] for a in multiplier(s_p / s_o))
            p[f"{name}.res.mx"], p[f"{name}.res.sx"] = (a[0] for a in multiplier(s_x / s_o))
        s_x = s_o
        source_scale = s_o
        if k < 4:
            s_n = cal.scale(f"norm{k}")
            norm = model.norms[k - 1]
            assert isinstance(norm, L2Norm)
            gamma = norm.weight.detach().double().numpy()
            p[f"norm{k}.m"], p[f"norm{k}.s"] = multiplier(gamma / s_n * 2.0**-L2NORM_RECIP_BITS)
            source_scale = s_n
        # Head: loc channels share one output scale, class channels another.
        head = model.heads[k - 1]
        assert isinstance(head, nn.Conv2d) and head.bias is not None
        hmax = cal.max[f"head{k}"]
        s_loc, s_conf = max(hmax[:4].max(), 1e-6) / 127.0, max(hmax[4:].max(), 1e-6) / 127.0
        s_out = np.array([s_loc] * 4 + [s_conf] * (head.out_channels - 4))
        w = head.weight.detach().double().numpy().transpose(0, 2, 3, 1)
        layer(f"head{k}", w, head.bias.detach().double().numpy(), source_scale, s_out, relu6=False)
        geometry = HEADS[k - 1]
        p[f"head{k}.score_m"], p[f"head{k}.score_s"] = (a[0] for a in multiplier(s_conf * 2.0**PRE_FRAC_BITS))
        p[f"head{k}.dc_m"], p[f"head{k}.dc_s"] = (
            a[0] for a in multiplier(s_loc * VARIANCE_CENTER * geometry.size * 2.0**BOX_FRAC_BITS)
        )
        d = np.arange(-128, 128)
        p[f"head{k}.wlut"] = np.clip(
            np.rint(geometry.size * 2.0**BOX_FRAC_BITS * np.exp(VARIANCE_SIZE * s_loc * d)), 0, 32767
        ).astype(np.int16)

    p["lut.sigmoid"], p["lut.tanh"] = lut_tables()
    # Diagnostics are not part of the integer model.
    scales = {"conv1": s_c1, "rnnpool": s_pool, "rnnpool.h": 2.0**-H_FRAC_BITS}
    for k in range(1, 5):
        for part in ("expand", "depthwise", "out"):
            scales[f"block{k}.{part}"] = cal.scale(f"block{k}.{part}", None if part == "out" else 6.0)
        if k < 4:
            scales[f"norm{k}"] = cal.scale(f"norm{k}")
    scales |= {f"hmax.{n}": float(cal.max[n].max()) for n in ("rnn1", "rnn2")}
    params = {k: np.array(v, order="C") for k, v in p.items() if not k.endswith("_float")}
    return params, scales


def quantize_checkpoint(checkpoint: Path | None, data: Path = DEFAULT_DATA) -> Params:
    checkpoint = checkpoint or Path("training/checkpoints/best.pt")
    return quantize_model(load_checkpoint(checkpoint), calibration_frames(data))[0]
