"""`vaekit train`'s flags come from the config fields' own metadata; every flag's help shows
its default; a mistyped flag gets the sub-command's usage and the closest flag."""

from __future__ import annotations

import argparse
import dataclasses
import typing

import pytest

from vaekit.cli import main
from vaekit.cli.flags import add_config_flags, config_overrides
from vaekit.cli.parser import build_parser, subcommands, train_sections
from vaekit.config import Config, apply_overrides, setting
from vaekit.models import MODELS


def _train_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def _all_parsers():
    parser = build_parser()
    yield "vaekit", parser
    yield from subcommands(parser)


def test_every_config_field_has_help_and_a_flag_that_sets_it():
    parser = _train_parser()
    flags = {f.path: f for f in parser.get_default("config_flags")}
    # The model section: the fields of every registered model's config class (cli.py).
    for section, cls in train_sections().items():
        for f in dataclasses.fields(cls):
            path = f"{section}.{f.name}"
            assert f.metadata.get("help"), f"{path} has no help text"
            if f.metadata.get("flag") == "":
                assert path not in flags
                continue
            assert path in flags, f"{path} has no flag"
    # Every generated flag's value lands in its field, through the config's own validation.
    argv = ["--out", "x", "--latent-dim", "3", "--hidden-dims", "8,4", "--no-tensorboard"]
    argv += ["--plateau-patience", "2", "--ema-decay", "0.99", "--image-size", "8x8"]
    argv += ["--no-report", "--compile", "--model", "ae", "--objective", "reconstruction"]
    args = parser.parse_args(argv)
    config = apply_overrides(Config(), config_overrides(args, args.config_flags))
    assert config.model.latent_dim == 3 and config.model.hidden_dims == [8, 4]
    assert config.train.tensorboard is False and config.train.report is False
    assert config.train.compile is True and config.model.kind == "ae"
    assert config.schedule.patience == 2 and config.optim.ema_decay == 0.99
    assert config.data.image_size == [8, 8]
    # Nothing given: nothing overridden, so a --config file's values stand.
    assert config_overrides(parser.parse_args([]), args.config_flags) == {}
    # train.compile: auto unless --compile or --no-compile says otherwise.
    assert Config().train.compile == "auto"
    off = parser.parse_args(["--out", "x", "--no-compile"])
    assert apply_overrides(Config(), config_overrides(off, off.config_flags)).train.compile is False
    assert apply_overrides(Config(), ['train.compile="auto"']).train.compile == "auto"


def test_rank_takes_a_number_auto_or_none(capsys):
    """--rank none unsets model.rank (independent heads on a table), as --set model.rank=none
    does; a flag's None alone would read as "not given" and leave the default "auto"."""
    parser = _train_parser()

    def rank(value: str):
        args = parser.parse_args(["--out", "x", "--rank", value])
        return apply_overrides(Config(), config_overrides(args, args.config_flags)).model.rank

    assert rank("none") is None and rank("None") is None
    assert rank("auto") == "auto" and rank("4") == 4
    assert Config().model.rank == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "x", "--rank", "full"])
    assert "expected an integer, auto or none, got 'full'" in capsys.readouterr().err
    # a field that cannot be null takes no "none"
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "x", "--num-importance-samples", "none"])
    assert "expected an integer or auto, got 'none'" in capsys.readouterr().err


# The flag names the README documents and scripts use: they must keep their meaning.
DOCUMENTED = {
    "--data": "data.name",
    "--data-dir": "data.data_dir",
    "--image-size": "data.image_size",
    "--epochs": "train.epochs",
    "--batch-size": "train.batch_size",
    "--seed": "train.seed",
    "--device": "train.device",
    "--lr": "optim.lr",
    "--latent-dim": "model.latent_dim",
    "--likelihood": "model.likelihood",
    "--posterior": "model.posterior",
    "--model": "model.kind",
    "--network": "model.network",
    "--hidden-dims": "model.hidden_dims",
    "--activation": "model.activation",
    "--objective": "objective.name",
    "--beta": "objective.beta",
    "--num-mc-samples": "objective.num_mc_samples",
    "--max-steps": "train.max_steps",
    "--patience": "train.patience",
    "--schedule": "schedule.name",
    "--warmup-steps": "schedule.warmup_steps",
    "--kl-warmup-steps": "objective.kl_warmup_steps",
    "--grad-clip": "optim.grad_clip",
    "--precision": "train.precision",
    "--log-every": "train.log_every",
    "--checkpoint-every": "train.checkpoint_every",
    "--progress": "train.progress",
    "--compile": "train.compile",
    "--deterministic": "train.deterministic",
}


def test_documented_flag_names_keep_their_fields():
    flags = {f.flag: f.path for f in _train_parser().get_default("config_flags")}
    for flag, path in DOCUMENTED.items():
        assert flags.get(flag) == path, flag


def test_model_choices_come_from_the_registry(capsys):
    action = next(a for a in _train_parser()._actions if "--model" in a.option_strings)
    assert list(action.choices) == sorted(MODELS)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", "x", "--model", "gan"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'gan'" in capsys.readouterr().err


def test_the_generator_walks_any_dataclasses_and_refuses_a_shared_flag():
    """A new section (e.g. a model's own config) is a new group of flags, no list to edit."""

    @dataclasses.dataclass
    class Toy:
        """A toy section."""

        width: int = setting(3, help="how wide")
        mode: typing.Literal["a", "b"] = setting("a", flag="toy-mode", help="which")
        hidden: int = setting(0, flag="", help="no flag for this one")

    parser = argparse.ArgumentParser()
    flags = add_config_flags(parser, {"toy": Toy})
    assert [f.flag for f in flags] == ["--width", "--toy-mode"]
    args = parser.parse_args(["--width", "5", "--toy-mode", "b"])
    assert config_overrides(args, flags) == {"toy.width=5": "--width", 'toy.mode="b"': "--toy-mode"}
    assert "how wide (default: 3)" in " ".join(parser.format_help().split())
    with pytest.raises(ValueError, match=r"toy2\.width and toy\.width would both be --width"):
        add_config_flags(argparse.ArgumentParser(), {"toy": Toy, "toy2": Toy})


def test_every_flag_of_every_command_shows_its_default():
    for name, parser in _all_parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or isinstance(
                action, argparse._HelpAction | argparse._VersionAction
            ):
                continue
            if action.help == argparse.SUPPRESS:  # an old spelling's flag, not offered
                continue
            text = formatter._expand_help(action) if action.help else ""
            assert "default" in text or "(required)" in text, (name, action.option_strings, text)


def test_train_help_shows_generated_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # no hyphenated line breaks in the text we look for
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--latent-dim N m, the dimension of the latent code z (default: 16)" in help_text
    assert "--hidden-dims N,N,... MLP widths" in help_text and "(default: 512,256)" in help_text
    assert "--report, --no-report" in help_text
    for preset in ("digits", "smoke", "mnist-nll"):
        assert preset in help_text


def test_version(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"vaekit {importlib.metadata.version('vaekit')}"


@pytest.mark.parametrize(
    "argv,usage,hint",
    [
        (["train", "--epocs", "3"], "usage: vaekit train", "did you mean --epochs?"),
        (["train", "--latent_dim", "3"], "usage: vaekit train", "did you mean --latent-dim?"),
        (["evaluate", "RUN", "--num-smaples=9"], "usage: vaekit evaluate", "--num-samples?"),
        # A prefix is no flag: it is refused, not taken as --epochs.
        (["train", "--epoch", "3"], "usage: vaekit train", "did you mean --epochs?"),
    ],
)
def test_a_mistyped_flag_shows_the_command_usage_and_the_closest_flag(capsys, argv, usage, hint):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage) and hint in err
