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


def _stand_in(name: str):
    """The built-in image set ``name`` as its loader presents it (shape, transform, support,
    levels), with 20 random images in place of its files, so no download is needed."""
    import numpy as np

    from vaekit.data import load_dataset
    from vaekit.data.builtin import VARIANTS, build_image_dataset

    if name == "digits":
        return load_dataset("digits")
    source, _, variant = name.partition("-binarized-")
    variant = f"binarized-{variant}" if variant else ""
    assert source in ("mnist", "fashion-mnist"), name  # a new data set needs its stand-in
    rng = np.random.default_rng(0)
    arrays = {
        f"{k}_x": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8) for k in ("train", "test")
    }
    arrays |= {f"{k}_y": np.arange(20) % 10 for k in ("train", "test")}
    return build_image_dataset(name, arrays, VARIANTS[variant], 0.1, 0, "stand-in")


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.toml")))
def test_presets_load_and_build(name):
    """Every preset loads, is resolved against its data as training resolves it, and builds
    its model and objective, whose loss on a batch of the data is finite."""
    import torch

    from vaekit.models import build_model
    from vaekit.objectives import build_objective
    from vaekit.training.data_setup import training_data

    config = load_config(CONFIGS / f"{name}.toml")
    assert isinstance(config.schedule, ScheduleConfig)
    assert config.train.batch_size >= 1
    dataset = training_data(config, _stand_in(config.data.name))
    torch.manual_seed(0)
    model = build_model(config.model)
    assert model.config.data_shape == list(dataset.shape)
    x, y = dataset.fixed("train")[:4].float(), dataset.train.y[:4]
    loss, _ = build_objective(config.objective, model)(model, x, y)
    assert torch.isfinite(loss)


def test_preset_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 'many'\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: train\.epochs .*not an integer"):
        load_config(bad)
