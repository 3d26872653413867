"""The ELBO has one sign and one space everywhere: training's lines and metrics.jsonl give it
of the data as given (higher is better), as `vaekit evaluate` and the report do; the loss
stays the objective on the model's inputs."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from helpers import tiny
from vaekit.data import load_dataset
from vaekit.training import train

evaluate = importlib.import_module("vaekit.evaluate")
torch.set_num_threads(1)


def test_training_figures_are_of_the_data_as_given_as_evaluate_reports_them(tmp_path):
    lines = []
    result = train(tiny("train.epochs=2", "train.report=false"), log=lines.append)
    c = 64 * math.log(17)  # digits: 8 x 8 dequantised levels 0..16
    for record in result.steps:  # the plain ELBO: loss = -elbo, both of the data as given
        assert record["elbo"] == pytest.approx(-record["loss"], rel=1e-6)
        assert record["log_px_z"] - record["kl"] == pytest.approx(record["elbo"], rel=1e-6)
    epoch = result.history[-1]
    assert epoch["train_elbo"] == pytest.approx(-epoch["train_loss"], rel=1e-6)
    assert f"val: elbo {epoch['val_elbo']:.3f} " in "\n".join(lines)
    assert (
        "elbo, log_px_z and loss below are of the data as given: integer levels 0..16 "
        "(dequantisation bound: model-space figures + D log 17), as `vaekit evaluate` reports "
        "them: of the model's inputs (dequantised and scaled to [0, 1]) the ELBO is "
        f"{c:.3f} nats per example higher and the loss as much lower"
    ) in lines
    val = evaluate.evaluate(
        result.model, load_dataset("digits"), split="val", num_samples=2, fcd=False
    )
    # One draw each, so not equal; the same space, so far closer than c = 181 nats apart.
    assert abs(val["elbo"] - epoch["val_elbo"]) < 10 and val["elbo"] < 0


def test_a_model_without_likelihood_keeps_its_figures_as_evaluate_does(tmp_path):
    lines = []
    config = tiny(
        "train.epochs=1", "train.report=false", 'model.kind="ae"', 'objective.name="reconstruction"'
    )
    result = train(config, log=lines.append)
    record = result.steps[0]
    assert record["log_px_z"] == pytest.approx(-record["loss"], rel=1e-6)
    assert not any(line.startswith("elbo, log_px_z and loss below") for line in lines)
