"""Polyak averaging (optim.ema_decay): the update rule, and what the trainer does with it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vaekit
from helpers import tiny
from vaekit.config import Config, ConfigError, apply_overrides
from vaekit.training import state_files, train
from vaekit.training.averaging import PolyakAverage

torch.set_num_threads(1)


def test_update_is_the_warmed_up_exponential_average():
    p = nn.Parameter(torch.tensor([0.0, 10.0]))
    avg = PolyakAverage([p], decay=0.9)
    expected = p.detach().clone()
    for n, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        with torch.no_grad():
            p.fill_(value)
        d = min(0.9, (1 + n) / (10 + n))  # 0.1, 0.18, 0.25, 0.31: the warm-up
        expected = d * expected + (1 - d) * torch.full((2,), value)
        avg.update()
        torch.testing.assert_close(avg.averages[0], expected, rtol=0, atol=1e-6)
    assert avg.updates == 4


def test_applied_swaps_the_average_in_and_restores_the_raw_weights_even_on_error():
    p = nn.Parameter(torch.tensor([1.0]))
    avg = PolyakAverage([p], decay=0.5)
    with torch.no_grad():
        p.fill_(5.0)
    with pytest.raises(RuntimeError), avg.applied():
        assert p.item() == 1.0
        raise RuntimeError("validation failed")
    assert p.item() == 5.0


def test_bad_decay_is_refused():
    with pytest.raises(ConfigError, match=r"optim\.ema_decay"):
        apply_overrides(Config(), ["optim.ema_decay=1.0"])


def test_training_path_is_unchanged_and_the_saved_model_is_the_average(tmp_path):
    plain = train(tiny(), out=tmp_path / "plain", log=lambda line: None)
    averaged = train(tiny("optim.ema_decay=0.99"), out=tmp_path / "ema", log=lambda line: None)
    # The optimiser saw exactly the same weights: the raw weights kept in the last checkpoint
    # (written at the final step) equal the plain run's final weights, bit for bit.
    _, _, state, tensors = state_files.load_training_state(tmp_path / "ema/checkpoints/last")
    assert state["ema_updates"] == averaged.history[-1]["step"]
    raw = {k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")}
    plain_state = plain.model.state_dict()
    assert raw and all(torch.equal(raw[k], plain_state[k]) for k in raw)
    # The returned and saved model is the average: different weights, the same file on disk.
    loaded = vaekit.load(tmp_path / "ema")
    for k, v in averaged.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert any(not torch.equal(averaged.model.state_dict()[k], raw[k]) for k in raw)
