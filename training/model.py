"""RNNPool-Face-M4 (float, PyTorch) at 320x320x1, as in ../shared/design/ARCHITECTURE.md.

conv 3x3/s2 (1->4) + BN + ReLU6 -> RNNPool (8x8 patches, stride 4; FastGRNN RNN1 4->16 over each
row and column of a patch; shared bidirectional FastGRNN RNN2 16->16 over the summaries) ->
replicate pad 39->40 -> 4 MBConv blocks -> 4 heads on the L2-normalised sources -> 4,000 anchors.

Every activation that the integer model quantizes passes through `self.tap(name, x)`, which is the
identity in normal training, records ranges during calibration, and fake-quantizes during
quantization-aware fine-tuning. The names are the stage names of the integer model and the export.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.boxes import HEADS

Tap = Callable[[str, torch.Tensor], torch.Tensor]


def _identity_tap(name: str, x: torch.Tensor) -> torch.Tensor:
    return x


class FastGRNN(nn.Module):
    """z = s(Wx + Uh + bz); c = tanh(Wx + Uh + bc); h' = z h + (s(zeta)(1 - z) + s(nu)) c."""

    def __init__(self, n_in: int, n_hidden: int) -> None:
        super().__init__()
        self.n_hidden = n_hidden
        self.W = nn.Parameter(torch.randn(n_hidden, n_in) * (1.0 / n_in) ** 0.5)
        self.U = nn.Parameter(torch.randn(n_hidden, n_hidden) * (1.0 / n_hidden) ** 0.5)
        self.bias_gate = nn.Parameter(torch.ones(n_hidden))
        self.bias_update = nn.Parameter(torch.ones(n_hidden))
        self.zeta = nn.Parameter(torch.tensor(1.0))
        self.nu = nn.Parameter(torch.tensor(-4.0))

    def forward(
        self, seq: torch.Tensor, reverse: bool = False, tap: Tap = _identity_tap, name: str = ""
    ) -> torch.Tensor:
        """seq: (N, T, n_in) -> final hidden state (N, n_hidden)."""
        h = seq.new_zeros(seq.shape[0], self.n_hidden)
        # unbind once: indexing wx[:, t] per step would make autograd zero-fill wx for every step.
        wx = (seq @ self.W.t()).unbind(1)
        zeta, nu = torch.sigmoid(self.zeta), torch.sigmoid(self.nu)
        for wx_t in reversed(wx) if reverse else wx:
            pre = wx_t + h @ self.U.t()
            z = torch.sigmoid(pre + self.bias_gate)
            c = torch.tanh(pre + self.bias_update)
            h = tap(name, z * h + (zeta * (1 - z) + nu) * c)
        return h


class RNNPool(nn.Module):
    """8x8 patches at stride 4 over (B, C, H, W) -> (B, 4 * h2, (H-8)/4+1, (W-8)/4+1).

    The RNN1 pass over a row (or column) segment is shared by the two vertically (horizontally)
    neighbouring patches that contain it, so it is computed once per segment.
    """

    patch = 8
    stride = 4

    def __init__(self, n_in: int, h1: int, h2: int) -> None:
        super().__init__()
        self.rnn1 = FastGRNN(n_in, h1)
        self.rnn2 = FastGRNN(h1, h2)

    def forward(self, x: torch.Tensor, tap: Tap = _identity_tap) -> torch.Tensor:
        b, c, h, w = x.shape
        p, s = self.patch, self.stride
        ny, nx = (h - p) // s + 1, (w - p) // s + 1
        h1 = self.rnn1.n_hidden
        # Row segments: every image row y, columns [s*j, s*j + p); time runs left to right.
        rows = x.unfold(3, p, s).permute(0, 2, 3, 4, 1).reshape(b * h * nx, p, c)
        row_sum = self.rnn1(rows, tap=tap, name="rnn1").reshape(b, h, nx, h1)
        # Column segments: every column x, rows [s*i, s*i + p); time runs top to bottom.
        cols = x.unfold(2, p, s).permute(0, 2, 3, 4, 1).reshape(b * ny * w, p, c)
        col_sum = self.rnn1(cols, tap=tap, name="rnn1").reshape(b, ny, w, h1)
        # Patch (i, j): its 8 row summaries are row_sum[4i:4i+8, j], its column ones col_sum[i, 4j:4j+8].
        patch_rows = row_sum.unfold(1, p, s).permute(0, 1, 2, 4, 3).reshape(b * ny * nx, p, h1)
        patch_cols = col_sum.unfold(2, p, s).permute(0, 1, 2, 4, 3).reshape(b * ny * nx, p, h1)
        out = torch.cat(
            [
                self.rnn2(patch_rows, tap=tap, name="rnn2"),
                self.rnn2(patch_rows, reverse=True, tap=tap, name="rnn2"),
                self.rnn2(patch_cols, tap=tap, name="rnn2"),
                self.rnn2(patch_cols, reverse=True, tap=tap, name="rnn2"),
            ],
            dim=1,
        )
        return out.reshape(b, ny, nx, -1).permute(0, 3, 1, 2)


class ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        )


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand + ReLU6, 3x3 depthwise (stride) + ReLU6, 1x1 project (linear)."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int = 2) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.expand = ConvBN(c_in, hidden, 1)
        self.depthwise = ConvBN(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBN(hidden, c_out, 1)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor, tap: Tap, name: str) -> torch.Tensor:
        y = tap(f"{name}.expand", F.relu6(self.expand(x)))
        y = tap(f"{name}.depthwise", F.relu6(self.depthwise(y)))
        y = self.project(y)
        if self.residual:
            y = tap(f"{name}.project", y) + x
        return tap(f"{name}.out", y)


class L2Norm(nn.Module):
    def __init__(self, channels: int, init_scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), init_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-10).sqrt()
        return x / norm * self.weight.view(1, -1, 1, 1)


# Channels of each source and the L2Norm initial scale (None: source used as is).
SOURCES = ((32, 10.0), (32, 8.0), (64, 5.0), (64, None))
# Class channels per head: the first head predicts 3 background scores and keeps their max.
HEAD_CLASSES = (4, 2, 2, 2)


class RNNPoolFace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvBN(1, 4, 3, stride=2)
        self.rnnpool = RNNPool(4, 16, 16)
        self.blocks = nn.ModuleList([MBConv(64, 32, 1), MBConv(32, 32, 1), MBConv(32, 64, 2), MBConv(64, 64, 1)])
        self.norms = nn.ModuleList([L2Norm(c, s) if s is not None else nn.Identity() for c, s in SOURCES])
        heads = [nn.Conv2d(c, 4 + k, 3, padding=1) for (c, _), k in zip(SOURCES, HEAD_CLASSES, strict=True)]
        with torch.no_grad():  # start every anchor at a 1 % face prior, as focal-loss detectors do
            for head in heads:
                assert head.bias is not None
                head.bias[4:].zero_()
                head.bias[-1] = -4.6
        self.heads = nn.ModuleList(heads)
        self.tap: Tap = _identity_tap

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image: (B, 1, 320, 320) float in [-1, 1) (pixel - 128) / 128.

        Returns loc (B, 4000, 4) offsets and conf (B, 4000, 2) logits [background, face].
        """
        tap = self.tap
        x = tap("input", image)
        x = tap("conv1", F.relu6(self.conv1(x)))
        x = self.rnnpool(x, tap)
        x = tap("rnnpool", F.pad(x, (0, 1, 0, 1), mode="replicate"))
        locs, confs = [], []
        for k, block in enumerate(self.blocks):
            x = block(x, tap, f"block{k + 1}")
            source = tap(f"norm{k + 1}", self.norms[k](x)) if k < 3 else x
            out = tap(f"head{k + 1}", self.heads[k](source))
            b = out.shape[0]
            out = out.permute(0, 2, 3, 1).reshape(b, -1, out.shape[1])
            locs.append(out[..., :4])
            cls = out[..., 4:]
            if cls.shape[-1] > 2:  # max-out background
                cls = torch.stack([cls[..., :-1].max(dim=-1).values, cls[..., -1]], dim=-1)
            confs.append(cls)
        loc, conf = torch.cat(locs, dim=1), torch.cat(confs, dim=1)
        assert loc.shape[1] == sum(h.grid**2 for h in HEADS)
        return loc, conf


def load_checkpoint(path: str | Path) -> RNNPoolFace:
    """A float model from a checkpoint written by training.train (or a bare state dict)."""
    model = RNNPoolFace()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("model", state))
    return model


def image_to_tensor(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W) device frames -> the model's float input."""
    return (frames.float().unsqueeze(1) - 128.0) / 128.0
