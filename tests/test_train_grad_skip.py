"""The gradient-skip threshold: a step whose gradient norm is above train.grad_skip_threshold
leaves the weights and the optimiser as they were, and is counted in skipped_steps."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import tiny
from vaekit.cli import main
from vaekit.config import ConfigError
from vaekit.data import Dataset, Split
from vaekit.data.transforms import Transform
from vaekit.training import Trainer, state_files

torch.set_num_threads(1)
THRESHOLD = 1000.0


def vectors() -> Dataset:
    x = torch.randn(256, 6, generator=torch.Generator().manual_seed(0))
    return Dataset(
        name="vectors",
        shape=(6,),
        train=Split(x[:192]),
        val=Split(x[192:]),
        test=Split(x[192:]),
        transform=Transform(),
        support="real",
        default_likelihood="gaussian-learned",
    )


def test_a_gradient_spike_is_skipped_and_a_normal_step_is_not(tmp_path):
    config = tiny(f"train.grad_skip_threshold={THRESHOLD}", "train.log_every=1")
    trainer = Trainer(config, tmp_path / "run", False, vectors(), lambda line: None, None)
    try:
        x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
        before = [p.detach().clone() for p in trainer.params]
        trainer.step(x, None, 32)  # an ordinary batch: updated
        assert trainer.records.steps[-1]["grad_norm"] < THRESHOLD
        assert trainer.state.skipped_steps == 0
        assert not all(torch.equal(a, p) for a, p in zip(before, trainer.params, strict=True))
        adam = {id(p): dict(s) for p, s in trainer.optimizer.state.items()}

        before = [p.detach().clone() for p in trainer.params]
        trainer.step(x * 10, None, 32)  # inputs ten times too large: a gradient spike
        assert trainer.records.steps[-1]["grad_norm"] > THRESHOLD
        assert (trainer.state.step, trainer.state.skipped_steps) == (2, 1)
        assert trainer.state.bad_steps == 0  # finite: not the NaN guard's business
        assert all(torch.equal(a, p) for a, p in zip(before, trainer.params, strict=True))
        for p, s in trainer.optimizer.state.items():  # Adam's moments and count untouched
            for key, value in s.items():
                assert torch.equal(value, adam[id(p)][key]), key

        trainer.step(x, None, 32)  # and training goes on
        assert trainer.state.skipped_steps == 1
        assert not all(torch.equal(a, p) for a, p in zip(before, trainer.params, strict=True))
    finally:
        trainer.lock.release()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    (skip,) = [r for r in map(json.loads, lines) if r["kind"] == "skip"]
    assert skip["step"] == 2
    assert skip["reason"].startswith("gradient norm ")
    assert skip["reason"].endswith(f" above train.grad_skip_threshold {THRESHOLD:g}")


def test_skipped_steps_are_recorded_summarised_and_resumed(tmp_path, capsys):
    # A threshold no gradient stays under: every step is skipped, the weights never move.
    run = tmp_path / "run"
    args = ["train", "--data", "digits", "--hidden-dims", "8", "--latent-dim", "2"]
    args += ["--network", "mlp", "--batch-size", "256", "--device", "cpu", "--progress", "plain"]
    args += ["--set", "train.tensorboard=false", "--no-report", "--grad-skip-threshold", "1e-12"]
    assert main([*args, "--epochs", "1", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "  6 of 6 steps skipped (a gradient norm above 1e-12 (--grad-skip-threshold)" in out
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in history if r["kind"] == "epoch"]
    assert [r["skipped_steps"] for r in epochs] == [6, 12]
    assert len([r for r in history if r["kind"] == "skip"]) == 12
    loop = state_files.load_training_state(run / "checkpoints" / "last")[2]["loop"]
    assert (loop["step"], loop["skipped_steps"]) == (12, 12)
    # Never updated: the saved model is the initial one of the same seed.
    first = state_files.load_training_state(run / "checkpoints" / "best")[1]
    last = state_files.load_training_state(run / "checkpoints" / "last")[1]
    assert all(torch.equal(first[k], last[k]) for k in first)


def test_the_threshold_must_be_positive():
    with pytest.raises(ConfigError, match=r"train\.grad_skip_threshold must be > 0 or null"):
        tiny("train.grad_skip_threshold=0")
    assert tiny().train.grad_skip_threshold is None
