"""Every command that takes --device: the same default, read the same way, with the same help."""

from __future__ import annotations

import argparse
import contextlib

import pytest
import torch

from vaekit import evaluate
from vaekit.cli.main import main
from vaekit.cli.parser import build_parser


class ReachedError(Exception):
    """Raised by a spy once the command has resolved its device."""


def _commands_with_device() -> dict[str, argparse.Action]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    out = {}
    for name, p in sub.choices.items():
        for action in p._actions:
            if "--device" in action.option_strings:
                out[name] = action
    return out


def test_train_and_evaluate_are_the_commands_with_device_and_share_its_help():
    flags = _commands_with_device()
    assert sorted(flags) == ["evaluate", "train"]
    helps = {action.help for action in flags.values()}
    assert len(helps) == 1
    (text,) = helps
    assert "auto (CUDA if available, else MPS, else CPU)" in text
    assert text.endswith("(default: auto)")


def _device_used(command: str, monkeypatch, tmp_path) -> torch.device:
    """The device ``vaekit COMMAND`` resolves when --device is not given."""
    seen: list[torch.device] = []
    if command == "train":
        import vaekit.training as training
        from vaekit.support.device import resolve_device

        def spy_train(config, **kwargs):
            seen.append(resolve_device(config.train.device))
            raise ReachedError

        monkeypatch.setattr(training, "train", spy_train)
        argv = ["train", "--config", "smoke", "--out", str(tmp_path / "run")]
    else:

        def spy_load(run, data_dir, device):
            seen.append(device)
            raise ReachedError

        monkeypatch.setattr(evaluate, "load_run", spy_load)
        argv = ["evaluate", str(tmp_path / "run"), "--no-fcd"]
    with contextlib.suppress(ReachedError, SystemExit):  # main may report it and exit non-zero
        main(argv)
    assert len(seen) == 1, "the command stopped before it resolved its device"
    return seen[0]


@pytest.mark.parametrize("command", sorted(_commands_with_device()))
def test_the_default_device_is_cuda_when_there_is_one(command, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _device_used(command, monkeypatch, tmp_path) == torch.device("cuda")


@pytest.mark.parametrize("command", sorted(_commands_with_device()))
def test_the_default_device_is_mps_then_cpu(command, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert _device_used(command, monkeypatch, tmp_path) == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert _device_used(command, monkeypatch, tmp_path) == torch.device("cpu")


def test_train_reads_cuda_n_as_evaluate_does(tmp_path):
    from vaekit.config import Config, ConfigError, apply_overrides

    assert apply_overrides(Config(), ['train.device="cuda:1"']).train.device == "cuda:1"
    with pytest.raises(ConfigError, match=r"train\.device must be one of auto, cpu, cuda"):
        apply_overrides(Config(), ['train.device="gpu"'])
