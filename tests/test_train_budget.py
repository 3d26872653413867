"""The default budget is sized to the data (10 epochs, raised to train.min_steps optimiser
steps, printed), and a run that ends with its validation ELBO still rising fast says so."""

from __future__ import annotations

import math

import pytest
import torch

import vaekit
from helpers import tiny
from vaekit.training import train
from vaekit.training.console import still_improving
from vaekit.training.validation import Validation

torch.set_num_threads(1)
REAL_VALIDATION = Validation.__call__


def scripted(monkeypatch, values):
    left = list(values)

    def call(self, model, averaged):
        return REAL_VALIDATION(self, model, averaged) | {"elbo": left.pop(0)}

    monkeypatch.setattr(Validation, "__call__", call)


def test_the_default_budget_is_raised_to_the_minimum_steps_and_printed(tmp_path):
    assert vaekit.TrainConfig().epochs is None and vaekit.TrainConfig().min_steps == 2000
    lines = []
    config = tiny("train.epochs=null", "train.min_steps=150", "train.report=false")
    result = train(config, out=tmp_path / "run", log=lines.append)
    per_epoch = result.history[0]["step"]
    epochs = math.ceil(150 / per_epoch)
    assert epochs > 10, "the minimum must raise the default of 10 epochs here"
    assert len(result.history) == epochs and result.history[-1]["step"] == epochs * per_epoch
    assert (
        f"budget: {epochs} epochs of {per_epoch} steps = {epochs * per_epoch} optimiser steps "
        "(the default: 10 epochs, raised to make at least 150 steps, train.min_steps; "
        "train.epochs or train.max_steps sets it)"
    ) in lines


def test_given_epochs_are_the_budget_and_small_minimums_keep_ten_epochs(tmp_path):
    lines = []
    result = train(tiny("train.epochs=1", "train.report=false"), log=lines.append)
    assert len(result.history) == 1 and not any(line.startswith("budget:") for line in lines)
    config = tiny("train.epochs=null", "train.min_steps=0", "train.report=false")
    config.model.hidden_dims = [4]
    assert len(train(config, log=lambda line: None).history) == 10


@pytest.mark.parametrize(
    ("values", "warned"),
    [([-100.0, -90.0, -80.0, -70.0], True), ([-100.0, -70.0, -69.9, -69.9], False)],
)
def test_a_run_ending_far_from_converged_warns(tmp_path, monkeypatch, values, warned):
    scripted(monkeypatch, values)
    lines = []
    train(tiny("train.epochs=4", "train.report=false"), log=lines.append)
    warning = (
        "warning: training ended far from converged: the validation ELBO still rose by "
        "10.000 nats per example over the last epoch, 33% of its rise since the first epoch; "
        "a longer run (train.epochs or train.max_steps) would likely give a better model"
    )
    assert (lines[-1] == warning) is warned
    assert not any(line.startswith("warning: training ended") for line in lines[:-1])


def test_still_improving_judges_the_last_quarter_against_the_whole_rise():
    record = [{"val_elbo": v} for v in (-100.0, -60.0, -50.0, -45.0, -44.0, -43.9, -43.8, -43.7)]
    assert still_improving(record) is None  # the last 2 epochs: 0.2 of 56.3 nats
    rising = [{"val_elbo": -100.0 + 5.0 * e} for e in range(8)]
    assert "by 10.000 nats per example over the last 2 epochs, 29%" in still_improving(rising)
    assert still_improving(rising[:2]) is None  # two points are no trend
    assert still_improving([{"val_elbo": -100.0 - e} for e in range(8)]) is None  # worse
