"""The settings left "auto" (objective, K, weight decay, rank) take one value per data set,
whether the table is trained by ``vaekit train`` or by ``VAEEstimator``: the table defaults
for a mixed-type table, the old defaults for anything else; a value given always wins, and
the run's config.json records the concrete values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_tables import HEADER, TINY, mixed_rows, write_csv
from vaekit import VAEEstimator
from vaekit.cli import main
from vaekit.config import Config, ConfigError, apply_overrides
from vaekit.data_defaults import DataFacts, data_defaults, resolve_auto

FIELDS = ("objective.name", "objective.num_importance_samples", "optim.weight_decay", "model.rank")
# 380 rows: a tenth for the test split, a tenth of the rest to validate, 308 to train (above
# the rank's 300); age and income are the real and positive columns: rank min(16, 2 - 1) = 1.
TABLE = {
    "objective.name": "iwae",
    "objective.num_importance_samples": 10,
    "optim.weight_decay": 1e-4,
    "model.rank": 1,
}
OLD = {
    "objective.name": "elbo",
    "objective.num_importance_samples": 5,
    "optim.weight_decay": 0.0,
    "model.rank": None,
}
STEPS = ["--max-steps", "3"]


def saved(run) -> dict:
    """The four settings as the run's config.json records them."""
    config = json.loads((run / "config.json").read_text())["config"]
    return {path: config[path.split(".")[0]][path.split(".")[1]] for path in FIELDS}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("t") / "people.csv", HEADER, mixed_rows(380))


def test_each_setting_for_the_facts():
    assert data_defaults(DataFacts(True, 300, 2)) == TABLE
    assert data_defaults(DataFacts(True, 10_000, 30))["model.rank"] == 16
    assert data_defaults(DataFacts(True, 10_000, 9))["model.rank"] == 8
    assert data_defaults(DataFacts(True, 300, 3))["model.rank"] == 2
    assert data_defaults(DataFacts(True, 299, 30))["model.rank"] is None  # too few rows
    assert data_defaults(DataFacts(True, 10_000, 1))["model.rank"] is None  # one column
    assert data_defaults(DataFacts(False, 10_000, 0)) == OLD


def test_the_cli_and_the_estimator_train_a_table_alike(table, tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    cli = tmp_path / "cli"
    assert main(["train", "--data", str(table), "--out", str(cli), *TINY, *STEPS]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "table defaults" in line]
    assert lines == [
        "table defaults (308 training rows, 2 real or positive columns): objective iwae, "
        "K = 10 importance samples, weight decay 0.0001, rank 1 (a flag, --set or config "
        "value replaces any of them)"
    ]
    est = tmp_path / "est"
    VAEEstimator(latent_dim=2, hidden_dims=(16,), max_steps=3, batch_size=16, run_dir=est).fit(
        pd.read_csv(table)
    )
    assert saved(cli) == saved(est) == TABLE
    # a resumed run reads the concrete values back: the same model, nothing re-decided
    assert main(["train", "--resume", str(cli), "--max-steps", "4"]) == 0
    assert saved(cli) == TABLE


def test_values_given_win_on_a_table(table, tmp_path, capsys):
    toml = tmp_path / "given.toml"
    toml.write_text("[optim]\nweight_decay = 0\n")
    run = tmp_path / "run"
    given = ["--objective", "elbo", "--rank", "auto", "--config", str(toml)]
    assert main(["train", "--data", str(table), "--out", str(run), *TINY, *STEPS, *given]) == 0
    assert saved(run) == TABLE | {"objective.name": "elbo", "optim.weight_decay": 0.0}
    line = next(x for x in capsys.readouterr().out.splitlines() if "table defaults" in x)
    assert "weight decay" not in line and "objective" not in line and "rank 1" in line
    flagged = tmp_path / "flagged"
    flags = ["--weight-decay", "0", "--num-importance-samples", "3", "--rank", "none"]
    assert main(["train", "--data", str(table), "--out", str(flagged), *TINY, *STEPS, *flags]) == 0
    assert saved(flagged) == TABLE | {
        "optim.weight_decay": 0.0,
        "objective.num_importance_samples": 3,
        "model.rank": None,
    }


def test_an_array_or_image_set_keeps_the_old_defaults(tmp_path, capsys):
    rng = np.random.default_rng(0)
    array = rng.normal(size=(400, 5))
    np.save(tmp_path / "x.npy", array)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--out", str(run), *TINY, *STEPS]) == 0
    images = tmp_path / "images"
    assert main(["train", "--data", "digits", "--out", str(images), *TINY, *STEPS]) == 0
    assert "table defaults" not in capsys.readouterr().out
    est = tmp_path / "est"
    VAEEstimator(latent_dim=2, hidden_dims=(16,), max_steps=3, run_dir=est).fit(array)
    assert saved(run) == saved(images) == OLD
    # the estimator's train_samples=10 is given, as before, and unused by the ELBO
    assert saved(est) == OLD | {"objective.num_importance_samples": 10}


def test_kl_warm_up_or_free_bits_keep_the_elbo_and_an_old_config_resolves_to_itself():
    warm = apply_overrides(Config(), ["objective.kl_warmup_steps=100"])
    applied = resolve_auto(warm, DataFacts(True, 1000, 5), ("elbo", "iwae"))
    assert warm.objective.name == applied["objective.name"] == "elbo"
    assert warm.optim.weight_decay == 1e-4  # the other table defaults still apply
    no_iwae = Config()
    resolve_auto(no_iwae, DataFacts(True, 1000, 5), ("reconstruction",))
    assert no_iwae.objective.name == "elbo"  # the model's own criterion stands in for it
    # a config.json written before these settings could say "auto": concrete values, kept
    old = Config().to_dict()
    for path, value in OLD.items():
        section, name = path.split(".")
        old[section][name] = value
    loaded = Config.from_dict(json.loads(json.dumps(old)))
    assert resolve_auto(loaded, DataFacts(True, 1000, 5), ("elbo", "iwae")) == {}
    assert loaded.to_dict() == Config.from_dict(old).to_dict()
    assert {p: getattr(getattr(loaded, p.split(".")[0]), p.split(".")[1]) for p in FIELDS} == OLD


def test_bad_values_are_refused_by_name(capsys):
    with pytest.raises(ConfigError, match=r"optim\.weight_decay must be >= 0"):
        apply_overrides(Config(), ["optim.weight_decay=-1"])
    with pytest.raises(ConfigError, match="num_importance_samples must be >= 1"):
        apply_overrides(Config(), ["objective.num_importance_samples=0"])
    with pytest.raises(ConfigError, match=r"model\.rank"):
        apply_overrides(Config(), ['model.rank="full"'])
    with pytest.raises(SystemExit):
        main(["train", "--data", "x.csv", "--out", "r", "--weight-decay", "some"])
    assert "--weight-decay: expected a number or auto, got 'some'" in capsys.readouterr().err


def test_a_model_or_objective_built_from_a_config_without_data_reads_auto_as_before():
    from vaekit.config import ObjectiveConfig
    from vaekit.models import VAE
    from vaekit.objectives import IWAEObjective, NegativeELBO, build_objective

    config = VAE.config_class(
        latent_dim=2, hidden_dims=[8], data_shape=[5], likelihood="gaussian-lowrank"
    )
    assert config.rank == "auto"
    model = VAE(config)
    assert model.config.rank is None and model.likelihood.rank == 1  # the likelihood's own
    assert type(build_objective(ObjectiveConfig(), model)) is NegativeELBO
    iwae = build_objective(ObjectiveConfig(name="iwae"), model)
    assert isinstance(iwae, IWAEObjective) and iwae.num_samples == 5
