"""Which model training ends with: the last epoch's weights (train.keep = "last", said in the
summary with the best epoch beside it) or the best validation ELBO's (train.keep = "best")."""

from __future__ import annotations

import json

import pytest
import torch

import vaekit
from helpers import tiny
from vaekit import checkpoint
from vaekit.training import state_files, train
from vaekit.training.validation import Validation

torch.set_num_threads(1)
# Validation ELBOs scripted per epoch (the rest of validation is real): epoch 2 is the best.
SCRIPT = [-100.0, -90.0, -95.0, -97.0]


def weights(path) -> dict[str, torch.Tensor]:
    return checkpoint.load(path).state_dict()


REAL = Validation.__call__


def scripted(monkeypatch, values):
    real, left = REAL, list(values)

    def call(self, model, averaged):
        return real(self, model, averaged) | {"elbo": left.pop(0)}

    monkeypatch.setattr(Validation, "__call__", call)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root, logs = tmp_path_factory.mktemp("keep"), {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for keep in ("last", "best"):
            scripted(monkeypatch, SCRIPT)
            lines = logs[keep] = []
            config = tiny("train.epochs=4", "train.report=false", f'train.keep="{keep}"')
            logs[keep + "_result"] = train(config, out=root / keep, log=lines.append)
    return root, logs


def test_last_is_kept_by_default_and_the_summary_names_the_best_epoch(runs):
    root, logs = runs
    assert vaekit.TrainConfig().keep == "last"
    kept = [line for line in logs["last"] if "model.safetensors holds" in line]
    assert kept == [
        "  model.safetensors holds the weights of the last epoch (4); the best validation ELBO "
        "was at epoch 2: train.keep = 'best' keeps that one"
    ]
    last = state_files.load_training_state(root / "last" / "checkpoints" / "last")[1]
    saved = weights(root / "last")
    assert all(torch.equal(saved[k], last[k]) for k in saved)
    metadata = json.loads((root / "last" / "config.json").read_text())["metadata"]
    assert (metadata["keep"], metadata["epoch"]) == ("last", 4)


def test_best_keeps_the_best_validation_epochs_weights(runs):
    root, logs = runs
    best_state = state_files.load_training_state(root / "best" / "checkpoints" / "best")[1]
    saved = weights(root / "best")
    assert all(torch.equal(saved[k], best_state[k]) for k in saved)
    last = weights(root / "last")
    assert not all(torch.equal(saved[k], last[k]) for k in saved)
    returned = logs["best_result"].model.state_dict()
    assert all(torch.equal(returned[k], best_state[k]) for k in saved)
    assert (
        "  model.safetensors holds the weights of epoch 2, the best validation ELBO "
        "(train.keep = 'best'; the last epoch was 4)" in logs["best"]
    )
    metadata = json.loads((root / "best" / "config.json").read_text())["metadata"]
    assert (metadata["keep"], metadata["epoch"]) == ("best", 2)


def test_best_after_a_resume_reads_checkpoints_best(runs, tmp_path, monkeypatch):
    # The same run in two sessions: the second has not seen the best epoch itself.
    root, _ = runs
    scripted(monkeypatch, SCRIPT)
    config = tiny("train.epochs=2", "train.report=false", 'train.keep="best"')
    train(config, out=tmp_path / "run", log=lambda line: None)
    config = tiny("train.epochs=4", "train.report=false", 'train.keep="best"')
    train(config, resume=tmp_path / "run", log=lambda line: None)
    saved, expected = weights(tmp_path / "run"), weights(root / "best")
    assert all(torch.equal(saved[k], expected[k]) for k in saved)


def test_best_needs_a_validation_split(tmp_path):
    config = tiny('train.keep="best"', "data.val_fraction=0.0")
    with pytest.raises(ValueError, match=r"train.keep = 'best' needs a validation split"):
        train(config, out=tmp_path / "run", log=lambda line: None)
