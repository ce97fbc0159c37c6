"""The moving average of the weights that `training.train --ema` evaluates and ships."""

from __future__ import annotations

import torch

from training.model import RNNPoolFace
from training.train import WeightAverage


def _perturbed(model: RNNPoolFace, seed: int) -> dict[str, torch.Tensor]:
    """Give every float parameter and buffer new random values, as an optimiser step would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.randn(value.shape, generator=generator))
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_average_follows_the_closed_form_and_copies_counters() -> None:
    torch.manual_seed(0)
    model = RNNPoolFace()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, decay=0.75)
    first = _perturbed(model, 1)
    average.update(model)
    second = _perturbed(model, 2)
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            value.fill_(7)
    average.update(model)

    averaged = average.model.state_dict()
    floats = [k for k, v in start.items() if v.is_floating_point()]
    assert any("running_mean" in k for k in floats), "BN statistics must be averaged too"
    for name in floats:
        expected = 0.75 * (0.75 * start[name] + 0.25 * first[name]) + 0.25 * second[name]
        torch.testing.assert_close(averaged[name], expected)
    counters = [k for k in start if k.endswith("num_batches_tracked")]
    assert counters and all(int(averaged[k]) == 7 for k in counters)


def test_average_is_a_separate_frozen_copy() -> None:
    model = RNNPoolFace()
    average = WeightAverage(model, decay=0.9)
    assert all(not p.requires_grad for p in average.model.parameters())
    assert not average.model.training
    name = next(k for k, v in model.state_dict().items() if v.is_floating_point())
    before = average.model.state_dict()[name].clone()
    _perturbed(model, 3)
    torch.testing.assert_close(average.model.state_dict()[name], before)
