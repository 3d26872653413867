"""Bad input, category "memory estimates": a request the machine cannot hold is refused
before anything is allocated, with the estimate in bytes, the memory available and the
setting that asked (vaekit/support/memory.py). The budget is pinned in most tests (the estimate is
what is under test, not this machine's free memory)."""

from __future__ import annotations

import re

import pytest
import torch

import vaekit.support.memory
from helpers import tiny
from vaekit.cli import main
from vaekit.evaluation.chunking import decoder_floats_per_row
from vaekit.models import build_model
from vaekit.support.memory import MemoryEstimateError
from vaekit.training import train
from vaekit.training.step import check_training_fits, parameter_count


def _estimate(message: str) -> int:
    return int(re.search(r"\(([\d,]+) bytes", message).group(1).replace(",", ""))


def test_sample_refuses_n_beyond_memory_with_the_estimate(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vaekit.support.memory, "available_bytes", lambda device="cpu": 10**6)
    out = tmp_path / "s.png"
    assert main(["sample", str(tiny_run), "-n", "2000", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaekit: error: -n 2000: decoding 2000 prior samples needs about")
    assert "more than the 1 MB available on cpu" in err
    model = vaekit.load(tiny_run)
    assert _estimate(err) == 2000 * decoder_floats_per_row(model) * 4  # float32 rows
    assert not out.exists()
    assert main(["sample", str(tiny_run), "-n", "16", "-o", str(out)]) == 0  # a small n fits
    assert out.exists()


def test_sample_of_a_hundred_million_is_refused_on_this_machine(tiny_run, tmp_path, capsys):
    assert main(["sample", str(tiny_run), "-n", "100000000", "-o", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "-n 100000000" in err and _estimate(err) > 10**11
    assert not (tmp_path / "s.png").exists()


def test_the_parameter_count_is_the_built_models():
    config = tiny("model.hidden_dims=[24, 12]").model
    config.data_shape, config.likelihood = [1, 8, 8], "gaussian-learned"
    built = build_model(config)
    assert parameter_count(config) == sum(p.numel() for p in built.parameters())


def test_train_refuses_a_model_beyond_memory_before_building_it(tmp_path, monkeypatch):
    monkeypatch.setattr(vaekit.support.memory, "available_bytes", lambda device="cpu": 10**6)
    built = []
    monkeypatch.setattr("vaekit.training.parts.build_model", lambda *a: built.append(a))
    config = tiny("model.hidden_dims=[4000]", "optim.ema_decay=0.99")
    with pytest.raises(MemoryEstimateError) as refused:
        train(config, out=tmp_path / "r", log=lambda s: None)
    message = str(refused.value)
    assert "model.hidden_dims = [4000]" in message and "more than the 1 MB available" in message
    count = parameter_count(config.model)
    assert f"has {count:,} parameters" in message
    assert _estimate(message) == count * 4 * 5  # float32; weights, grads, 2 moments, average
    assert built == [] and not (tmp_path / "r").exists()


def test_train_command_line_names_the_field_and_the_bytes(tmp_path, capsys):
    argv = ["train", "--config", "smoke", "--out", str(tmp_path / "r")]
    assert main([*argv, "--set", "model.hidden_dims=[100000000]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaekit: error: the model (model.hidden_dims = [100000000]")
    assert _estimate(err) > 10**11 and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_a_budget_that_fits_passes(monkeypatch):
    config = tiny().model
    config.data_shape, config.likelihood = [1, 8, 8], "gaussian-learned"
    count = parameter_count(config)
    monkeypatch.setattr(vaekit.support.memory, "available_bytes", lambda device="cpu": count * 16)
    check_training_fits(config, torch.device("cpu"), copies=4)  # exactly fits
    with pytest.raises(MemoryEstimateError):
        check_training_fits(config, torch.device("cpu"), copies=5)


@pytest.mark.parametrize("examples", ["1", "4"])
def test_em_with_too_few_examples_is_one_line(capsys, examples):
    argv = ["lesson", "em", "--max-examples", examples, "--steps", "5", "--em-iterations", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaekit: error: PPCA with m = 3 needs variance beyond")
    assert "give at least 5 examples (--max-examples)" in err and "\n" not in err


def test_em_with_just_enough_examples_works(capsys):
    argv = ["lesson", "em", "--max-examples", "5", "--steps", "5", "--em-iterations", "2", "--json"]
    assert main(argv) == 0


@pytest.mark.parametrize(
    "command, flags, message",
    [
        ("traverse", ["--steps", "5000"], "--max-dims 10 x --steps 5000: decoding 10000 images"),
        ("interpolate", ["--steps", "5000"], "--pairs 8 x --steps 5000: decoding 40000 images"),
    ],
)
def test_picture_grids_beyond_memory_are_refused(
    tiny_run, tmp_path, capsys, monkeypatch, command, flags, message
):
    monkeypatch.setattr(vaekit.support.memory, "available_bytes", lambda device="cpu": 10**6)
    out = tmp_path / "p.png"
    assert main([command, str(tiny_run), "-o", str(out), *flags]) == 2
    assert capsys.readouterr().err.startswith(f"vaekit: error: {message} needs about")
    assert not out.exists()
