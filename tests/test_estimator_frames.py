"""VAEEstimator on a pandas DataFrame of mixed types with missing cells: the CLI's schema,
outputs in the DataFrame's own dtypes and categories, imputation that touches only the
missing cells, scores in nats of the observed cells as given."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaekit import VAEEstimator
from vaekit.data import DataError

pd = pytest.importorskip("pandas")

N = 240
FAST = dict(latent_dim=2, hidden_dims=(16,), max_steps=40, num_samples=8, batch_size=32)
KINDS = {
    "city": "categorical",
    "visits": "count",
    "income": "positive",
    "score": "real",
    "member": "binary",
    "rating": "categorical",
    "grade": "categorical",
}


def frame(seed: int = 0) -> pd.DataFrame:
    """Seven columns driven by one latent number, about 15 % of the cells of five of them
    missing: strings, counts, a skewed positive real, a real, booleans, integer ratings
    (float64 once NaN is in), and a pandas category."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=N)
    df = pd.DataFrame(
        {
            "city": np.where(z < -0.4, "north", np.where(z < 0.4, "east", "south")).astype(object),
            "visits": rng.poisson(np.exp(2 + 0.5 * z)),
            "income": np.exp(10 + 0.8 * z + 0.3 * rng.normal(size=N)),
            "score": 3 * z + 0.2 * rng.normal(size=N),
            "member": z > 0,
            "rating": np.clip(np.round(3 + z), 1, 5),
            "grade": pd.Categorical(np.where(z > 0.5, "A", np.where(z > -0.5, "B", "C"))),
        }
    )
    hide = rng.random((N, 5)) < 0.15
    for j, name in enumerate(["city", "income", "score", "rating", "grade"]):
        df.loc[hide[:, j], name] = None if name in ("city", "grade") else np.nan
    return df


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return frame()


@pytest.fixture(scope="module")
def fitted(data) -> VAEEstimator:
    return VAEEstimator(**FAST).fit(data)


def test_schema_is_the_clis(fitted, data):
    assert fitted.column_types_ == KINDS
    assert list(fitted.feature_names_in_) == list(data.columns)
    assert fitted.model_.config.likelihood == "tabular"
    assert fitted.frame_types_.values["member"] == {"False": False, "True": True}


def test_outputs_in_the_frames_dtypes_and_categories(fitted, data):
    codes = fitted.transform(data)
    assert isinstance(codes, np.ndarray) and codes.shape == (N, 2)
    for out in (fitted.inverse_transform(codes), fitted.sample(64)):
        assert list(out.columns) == list(data.columns)
        assert dict(out.dtypes) == dict(data.dtypes)
        assert set(out["city"]) <= {"north", "east", "south"}
        assert set(out["rating"]) <= {1.0, 2.0, 3.0, 4.0, 5.0}
        assert list(out["grade"].cat.categories) == ["A", "B", "C"]
        assert not out.isna().any().any()
        assert (out["visits"] >= 0).all() and (out["income"] > 0).all()
    assert len(set(fitted.sample(64)["city"])) > 1


def test_imputation_fills_only_the_missing_cells(fitted, data):
    before = data.copy()
    filled = fitted.impute(data)
    pd.testing.assert_frame_equal(data, before)  # the input is not touched
    assert list(filled.index) == list(data.index) and dict(filled.dtypes) == dict(data.dtypes)
    assert not filled.isna().any().any()
    observed = data.notna().to_numpy()
    for j, name in enumerate(data.columns):
        kept = observed[:, j]
        got, want = filled[name].to_numpy()[kept], data[name].to_numpy()[kept]
        assert (got == want).all(), name  # bit for bit
    assert set(filled["city"]) == {"north", "east", "south"}
    draws = fitted.impute(data, draws=2)
    assert len(draws) == 2 and all(not d.isna().any().any() for d in draws)
    gaps = data["score"].isna().to_numpy()
    assert not np.array_equal(draws[0]["score"][gaps], draws[1]["score"][gaps])
    with pytest.raises(ValueError, match="draws must be >= 1"):
        fitted.impute(data, draws=0)


def test_scores_count_the_observed_cells_in_their_units(data):
    """Scaling the real column by a leaves what the model sees unchanged, so each row's
    log p moves by exactly -log a where its cell is observed, and not at all where it is
    missing."""
    a = 1000.0
    scaled = data.assign(score=data["score"] * a)
    first = VAEEstimator(**{**FAST, "max_steps": 10}).fit(data)
    second = VAEEstimator(**{**FAST, "max_steps": 10}).fit(scaled)
    rows = slice(0, 40)
    shift = first.score_samples(data[rows]) - second.score_samples(scaled[rows])
    expected = np.where(data["score"][rows].notna(), math.log(a), 0.0)
    assert 0 < expected.sum() < 40 * math.log(a)
    np.testing.assert_allclose(shift, expected, atol=1e-3)
    # columns the model does not know are ignored
    extra = data[rows].assign(note="x")
    np.testing.assert_array_equal(first.score_samples(extra), first.score_samples(data[rows]))


def test_save_load_and_overrides(fitted, data, tmp_path):
    loaded = VAEEstimator.load(fitted.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(loaded.sample(9), fitted.sample(9))
    assert loaded.column_types_ == KINDS
    est = VAEEstimator(**{**FAST, "max_steps": 2}, column_types={"rating": "count"}).fit(data)
    assert est.column_types_["rating"] == "count"
    assert est.sample(20)["rating"].dtype == np.float64
    with pytest.raises(DataError, match=r"DataFrame: --column-type names column 'nope'"):
        VAEEstimator(**FAST, column_types={"nope": "real"}).fit(data)
    with pytest.raises(ValueError, match="give a pandas DataFrame"):
        fitted.transform(np.zeros((3, 7)))
    with pytest.raises(DataError, match="'city': 'west' is a category training never saw"):
        fitted.transform(data.head(2).assign(city="west"))


def test_a_model_file_from_before_the_scalar_gain_loads_with_its_meaning(fitted, data, tmp_path):
    """Model files written before the per-column scales and count dispersions were stored
    over a gain kept them under other names, as they are: they load converted, and score
    the same rows the same."""
    import hashlib
    import json

    from safetensors.torch import load_file, save_file

    from vaekit.distributions.tabular import SCALAR_GAIN

    path = fitted.save(tmp_path / "model")
    weights = path / "model.safetensors"
    state = load_file(weights)
    renamed = 0
    for new, old in (
        ("raw_scale_over_gain", "raw_scale"),
        ("log_total_count_over_gain", "log_total_count"),
    ):
        for key in [k for k in state if k.endswith("." + new)]:
            state[key.removesuffix(new) + old] = state.pop(key) * SCALAR_GAIN
            renamed += 1
    assert renamed == 2
    save_file(state, weights)
    config = json.loads((path / "config.json").read_text())
    config["weights"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(config))
    loaded = VAEEstimator.load(path)
    rows = data.head(30)
    np.testing.assert_allclose(loaded.score_samples(rows), fitted.score_samples(rows), rtol=1e-5)


def test_a_frame_of_numbers_keeps_the_numeric_path(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    est = VAEEstimator(**{**FAST, "max_steps": 2}).fit(df)
    assert est.column_types_ is None and est.model_.config.likelihood != "tabular"
    out = est.sample(4)
    assert list(out.columns) == ["a", "b", "c"] and out.shape == (4, 3)
    loaded = VAEEstimator.load(est.save(tmp_path / "numbers"))
    pd.testing.assert_frame_equal(loaded.sample(4), out)
    with pytest.raises(ValueError, match="impute needs a model of a mixed-type table"):
        est.impute(df)
    # a nullable integer column with a missing cell makes it a table; the dtype comes back
    holes = df.assign(n=pd.array([*range(59), None], dtype="Int64"))
    est = VAEEstimator(**{**FAST, "max_steps": 2}).fit(holes)
    assert est.column_types_ == {"a": "real", "b": "real", "c": "real", "n": "count"}
    filled = est.impute(holes)
    assert filled["n"].dtype == "Int64" and filled["n"].notna().all()
    assert (filled["n"][:59] == holes["n"][:59]).all()


def test_rank_reaches_the_low_rank_decoder(fitted, data, tmp_path):
    from sklearn.base import clone

    est = VAEEstimator(**{**FAST, "max_steps": 2}, likelihood="gaussian-lowrank", rank=1)
    assert est.get_params()["rank"] == 1
    assert clone(est).set_params(rank=3).get_params()["rank"] == 3
    est.fit(data)
    assert est.model_.config.rank == 1 and est.model_.likelihood.rank == 1
    head = est.model_.likelihood
    assert head.param_shape == (head.num_features + 2 * 2,)  # F features, then d and W
    loaded = VAEEstimator.load(est.save(tmp_path / "lowrank"))
    assert loaded.rank == 1 and loaded.model_.likelihood.rank == 1
    assert fitted.rank == "auto" and fitted.model_.likelihood.rank == 0  # few rows: no rank
    # income and score are the only real and positive columns: a rank of 1 at most
    with pytest.raises(ValueError, match=r"model\.rank = 2: .* a rank from 1 to 1"):
        est.set_params(rank=2).fit(data)


def test_a_table_trains_with_the_iwae_bound_and_weight_decay(data, tmp_path):
    """A mixed table's defaults: the IWAE bound (K = 10) and weight decay 1e-4; explicit
    choices win; bad values are refused by name."""
    import json

    VAEEstimator(**FAST, run_dir=tmp_path / "run").fit(data)
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["objective"]["name"] == "iwae"
    assert config["objective"]["num_importance_samples"] == 10
    assert config["optim"]["weight_decay"] == 1e-4
    chosen = VAEEstimator(**FAST, objective="elbo", weight_decay=0.0, train_samples=3)
    chosen.set_params(max_steps=2, run_dir=tmp_path / "chosen").fit(data)
    config = json.loads((tmp_path / "chosen" / "config.json").read_text())["config"]
    assert (config["objective"]["name"], config["optim"]["weight_decay"]) == ("elbo", 0.0)
    assert config["objective"]["num_importance_samples"] == 3
    with pytest.raises(ValueError, match="train_samples"):
        VAEEstimator(train_samples=0)._config(100)
    with pytest.raises(ValueError, match="weight_decay"):
        VAEEstimator(weight_decay=-1.0)._config(100)


def test_rank_gives_a_tables_real_columns_one_joint_gaussian(data):
    """``rank`` R: the table's real and positive columns share one low-rank Gaussian of that
    rank (as ``--rank R``); "auto" (the default) takes 16, at most their number less one
    (here two columns: 1); None keeps independent heads."""
    fast = dict(FAST, max_steps=2)
    joint = VAEEstimator(**fast, rank=1).fit(data)
    assert joint.model_.likelihood.rank == 1
    assert VAEEstimator(**fast).fit(data).model_.likelihood.rank == 0  # too few rows for auto
    assert VAEEstimator(**fast, rank=None).fit(data).model_.likelihood.rank == 0
    filled = joint.impute(data)
    assert not filled[["income", "score"]].isna().any().any()
    with pytest.raises(ValueError, match="rank must be"):
        VAEEstimator(rank="full")._config(100)


def test_an_estimator_pickled_before_a_parameter_existed_unpickles(fitted, data):
    """A pickle without ``unknown_categories`` (written before it existed) gives it its
    default, "error"; the estimator then imputes as the one pickled, and a category the
    training table never had is refused by name."""
    import pickle

    class Old:  # pickles as ``fitted`` would have been before the parameter existed
        def __reduce__(self):
            state = {k: v for k, v in fitted.__getstate__().items() if k != "unknown_categories"}
            return object.__new__, (VAEEstimator,), state

    old = pickle.loads(pickle.dumps(Old()))
    assert type(old) is VAEEstimator and old.unknown_categories == "error"
    rows = data.iloc[:20]
    pd.testing.assert_frame_equal(old.impute(rows), fitted.impute(rows))
    novel = rows.copy()
    novel.loc[0, "city"] = "west"
    with pytest.raises(DataError, match="west"):
        old.transform(novel)
