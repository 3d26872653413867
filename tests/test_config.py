"""Config: errors name the field and what is allowed; dict and TOML round trips; presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaekit.config import (
    Config,
    ConfigError,
    ScheduleConfig,
    apply_overrides,
    dump_toml,
    load_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_unknown_field_names_the_field_and_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"'train\.epoch'.*allowed:.*epochs.*max_steps"):
        Config.from_dict({"train": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"'trian'.*allowed:.*train"):
        Config.from_dict({"trian": {}})


def test_wrong_type_names_the_field_and_the_allowed_values():
    with pytest.raises(
        ConfigError, match=r"train\.precision must be one of 'fp32', 'bf16', 'fp16'"
    ):
        Config.from_dict({"train": {"precision": "fp64"}})
    with pytest.raises(ConfigError, match=r"schedule\.name must be one of 'constant', 'cosine'"):
        Config.from_dict({"schedule": {"name": "linear"}})
    with pytest.raises(ConfigError, match=r"train\.max_steps.*not an integer or null"):
        Config.from_dict({"train": {"max_steps": "ten"}})
    with pytest.raises(
        ConfigError,
        match=r"train\.compile has the wrong type: 1 is not true/false or one of .auto.",
    ):
        Config.from_dict({"train": {"compile": 1}})


def test_value_checks_name_the_field():
    with pytest.raises(ConfigError, match=r"optim\.grad_clip must be > 0"):
        Config.from_dict({"optim": {"grad_clip": 0}})
    with pytest.raises(ConfigError, match=r"schedule\.factor must be in \(0, 1\)"):
        Config.from_dict({"schedule": {"factor": 1.5}})
    with pytest.raises(ConfigError, match=r"train\.checkpoint_every must be >= 1"):
        Config.from_dict({"train": {"checkpoint_every": 0}})
    with pytest.raises(ConfigError, match=r"kl_warmup_steps needs objective\.name = 'elbo'"):
        Config.from_dict({"objective": {"name": "iwae", "kl_warmup_steps": 10}})


def test_set_overrides_and_their_errors():
    config = apply_overrides(
        Config(),
        ["optim.lr=3e-4", "schedule.name=cosine", "train.max_steps=20", "optim.grad_clip=1"],
    )
    assert config.optim.lr == 3e-4 and config.schedule.name == "cosine"
    assert config.train.max_steps == 20 and config.optim.grad_clip == 1.0
    assert apply_overrides(config, ["train.max_steps=null"]).train.max_steps is None
    with pytest.raises(ConfigError, match=r"unknown field 'train\.bogus'; allowed: .*epochs"):
        apply_overrides(Config(), ["train.bogus=1"])
    with pytest.raises(ConfigError, match=r"train\.deterministic must be true/false"):
        apply_overrides(Config(), ["train.deterministic=maybe"])


def test_dict_round_trip():
    config = apply_overrides(Config(), ["schedule.name=plateau", "train.patience=3"])
    assert Config.from_dict(config.to_dict()) == config


def test_toml_round_trip(tmp_path):
    config = apply_overrides(
        Config(),
        [
            "model.hidden_dims=[64, 32]",
            "optim.grad_clip=2.5",
            "schedule.name=cosine",
            "schedule.warmup_steps=7",
            "train.precision=bf16",
            "train.compile=true",
            "objective.kl_warmup_steps=100",
            "optim.lr=1e-05",
        ],
    )
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(config))
    assert load_config(path) == config


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.toml")))
def test_presets_load(name):
    config = load_config(CONFIGS / f"{name}.toml")
    assert isinstance(config.schedule, ScheduleConfig)
    assert config.train.batch_size >= 1


def test_preset_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 'many'\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: train\.epochs .*not an integer"):
        load_config(bad)
