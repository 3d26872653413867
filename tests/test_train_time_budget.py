"""train.max_minutes bounds the whole command: training keeps time back for the closing
report, whose evaluation is cut to fit what is left, without training the FCD classifier."""

from __future__ import annotations

import importlib

import torch

from helpers import tiny
from vaekit.data import load_dataset
from vaekit.training import Trainer, train

evaluate = importlib.import_module("vaekit.evaluate")
torch.set_num_threads(1)


def test_training_keeps_a_tenth_of_the_budget_at_most_a_minute_for_the_report(tmp_path):
    def trainer(name, *settings):
        config = tiny("train.max_minutes=20", *settings)
        made = Trainer(config, tmp_path / name, False, None, lambda line: None, None)
        made.lock.release()  # constructed only, never run
        return made

    with_report, without = trainer("a"), trainer("b", "train.report=false")
    assert with_report.clock.closing_seconds == 60.0 and without.clock.closing_seconds == 0.0
    clock = with_report.clock
    assert not clock.out_of_time(20 * 60 - 61, 0.0) and clock.out_of_time(20 * 60 - 59, 0.0)
    assert not without.clock.out_of_time(20 * 60 - 59, 0.0)
    assert trainer("c", "train.max_minutes=5").clock.closing_seconds == 30.0


def test_a_spent_budget_writes_the_model_and_says_how_to_write_the_report(tmp_path):
    lines, run = [], tmp_path / "run"
    result = train(tiny("train.max_minutes=0.0001"), out=run, log=lines.append)
    assert result.stop_reason == "time" and (run / "model.safetensors").is_file()
    assert not (run / "report.html").exists()
    assert (
        f"{run / 'report.html'} not written: the time budget (train.max_minutes 0.0001) is "
        f"spent; `vaekit report {run}` writes it"
    ) in lines


def test_the_evaluation_fits_its_time_budget_and_trains_no_classifier(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_CACHE_DIR", str(tmp_path / "empty-cache"))
    result = train(tiny("train.epochs=1", "train.report=false"), log=lambda line: None)
    lines = []
    out = evaluate.evaluate(
        result.model,
        load_dataset("digits"),
        num_samples=5,
        batch_size=10,
        max_seconds=0.0,
        log=lines.append,
    )
    assert out["num_examples"] == 10 and "frechet_classifier_distance" not in out
    assert "the time budget (0.0 s) fits 10 examples at K = 5" in lines
    assert any(line.startswith("the Fréchet classifier distance is left out") for line in lines)
    assert not (tmp_path / "empty-cache").exists()  # no classifier was trained
