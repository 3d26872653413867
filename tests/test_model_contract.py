"""The model contract, checked for every registered model (tests/helpers.py lists them).

Registering a model puts it under these tests: shapes, a bitwise save/load round trip, two
finite training steps, ``evaluate``, the bound ordering ELBO <= IWAE_k <= IWAE_K for models
with a likelihood, and a bitwise resume after SIGKILL.
"""

from __future__ import annotations

import math
import signal

import pytest
import torch

import vaekit
from helpers import model_names, tiny, tiny_model, tiny_model_overrides
from test_train_resume import metrics
from test_train_resume import vaekit as vaekit_cli
from vaekit.cli import main
from vaekit.config import ObjectiveConfig
from vaekit.data import load_dataset
from vaekit.evaluate import evaluate
from vaekit.models import MODELS
from vaekit.objectives import build_objective

MODELS_UNDER_TEST = model_names()


def _batch(model, n: int = 5, seed: int = 0):
    """Data in [0, 1] of the model's shape, and labels in 0..2 (ignored if unconditional)."""
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    x = torch.rand(n, *model.data_shape, generator=g).to(dtype)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y


def test_every_registered_model_is_under_test():
    assert list(MODELS) == MODELS_UNDER_TEST and {"vae", "ae"} <= set(MODELS_UNDER_TEST)
    for name, cls in MODELS.items():
        assert cls.name == name and cls.config_class().kind == name
        assert cls.objectives, name


def test_train_model_choices_and_help_come_from_the_registry(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one of " + ", ".join(sorted(MODELS)) + ";" in text
    for name, cls in MODELS.items():
        assert f"{name}: {' '.join(cls.description.split())}" in text
    with pytest.raises(SystemExit):  # argparse refuses a name the registry lacks
        main(["train", "--model", "nonexistent", "--out", "x"])
    assert "invalid choice: 'nonexistent'" in capsys.readouterr().err


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_shapes(name):
    torch.manual_seed(0)
    model = tiny_model(name).eval()
    x, y = _batch(model)
    B, shape = x.shape[0], model.data_shape
    assert model.reconstruct(x, y=y).shape == (B, *shape)
    assert model.sample(4, y=y[:4]).shape == (4, *shape)
    for key, value in model.per_example_metrics(x, y=y).items():
        assert value.shape == (B,), key
    if model.has_continuous_latent:
        m = model.latent_dim
        moments = model.latent_moments(x, y=y)
        assert moments.mean.shape == (B, m) and moments.covariance.shape == (B, m, m)
        z = torch.randn(3, B, m, dtype=x.dtype)
        assert model.decode_mean(z, y=y).shape == (3, B, *shape)
        assert model.decode(z, y=y).batch_shape == (3, B)
    if model.has_posterior:
        q = model.encode(x, y=y)
        assert q.mean.shape == (B, model.latent_dim)
        assert q.scale_tril.shape == (B, model.latent_dim, model.latent_dim)
    if model.has_likelihood:
        terms = model.elbo(x, 3, y=y)
        assert terms.elbo.shape == terms.log_px_z.shape == terms.kl.shape == (B,)
        assert torch.allclose(terms.elbo, terms.log_px_z - terms.kl)
        assert model.log_weights(x, 7, y=y).shape == (7, B)
        assert model.log_likelihood(x, 6, chunk_size=4, y=y).shape == (B,)
    with pytest.raises(ValueError, match="shape"):
        model.reconstruct(x.flatten(1)[:, :-1], y=y)


# What each registered model declares for its tiny settings (tests/helpers.py): the latent
# groups bottom first, the code-book size, and whether its codes are discrete. Registering a
# model without a row here fails test_the_latent_layout_is_declared_exactly.
LAYOUT = {
    "vae": ((2,), None, False),
    "ae": ((2,), None, False),
    "hvae": ((3, 2), None, False),
    "deep-hvae": ((3, 2, 2), None, False),
    "cvae": ((2,), None, False),
    "vqvae": ((2 * 3,), 8, True),  # 2 positions of 3-vectors from an 8-entry code book
}


def test_the_latent_layout_is_declared_exactly():
    assert set(LAYOUT) == set(MODELS_UNDER_TEST)
    for name, (layers, codebook_size, discrete) in LAYOUT.items():
        model = tiny_model(name)
        assert model.latent_layers == layers, name
        assert sum(model.latent_layers) == model.latent_dim, name
        assert model.codebook_size == codebook_size, name
        assert model.discrete is discrete, name
        assert model.has_codebook is discrete and model.has_continuous_latent is not discrete


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_decode_is_the_likelihood_of_decode_params(name):
    """decode and decode_mean read decode_params: the same numbers, every lead shape."""
    torch.manual_seed(0)
    model = tiny_model(name).eval()
    x, y = _batch(model)
    param_shape = tuple(model.likelihood.param_shape)
    with torch.no_grad():
        for lead in ((5,), (3, 5)):
            z = torch.randn(*lead, model.latent_dim)
            params = model.decode_params(z, y=y)
            assert params.shape == (*lead, *param_shape)
            assert torch.equal(model.decode_mean(z, y=y), model.likelihood.mean(params))
            log_p = model.decode(z, y=y).log_prob(x)
            assert torch.equal(log_p, model.likelihood(params).log_prob(x))


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_group_decoders_read_their_group_and_give_the_likelihoods_parameters(name):
    """One decoder per latent group, ``[B, m_group (+ C)] -> [B, *param_shape]``; for a model
    with one group it is decode_params itself (tests/test_hvae.py and test_deep_hvae.py
    check the groups of the hierarchical models against their generative paths)."""
    torch.manual_seed(0)
    model = tiny_model(name).eval()
    _, y = _batch(model)
    labels = torch.nn.functional.one_hot(y, model.num_classes) if model.takes_labels else None
    with torch.no_grad():
        for group, m in enumerate(model.latent_layers):
            z = torch.randn(5, m)
            given = z if labels is None else torch.cat([z, labels.float()], dim=1)
            params = model.group_decoder(group)(given)
            assert params.shape == (5, *model.likelihood.param_shape)
            if len(model.latent_layers) == 1:
                assert torch.equal(params, model.decode_params(z, y=y))
    with pytest.raises(IndexError, match="not"):
        model.group_decoder(len(model.latent_layers))


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_save_then_load_gives_bitwise_the_same_outputs(tmp_path, name):
    torch.manual_seed(0)
    model = tiny_model(name).eval()
    vaekit.save(model, tmp_path / "m")
    loaded = vaekit.load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    x, y = _batch(model)

    def outputs(m):
        torch.manual_seed(3)
        out = [m.reconstruct(x, y=y), m.sample(4, torch.Generator().manual_seed(1), y=y[:4])]
        out += list(m.per_example_metrics(x, y=y).values())
        if m.has_likelihood:
            out.append(m.log_likelihood(x, 5, y=y))
        return out

    for a, b in zip(outputs(model), outputs(loaded), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_two_training_steps_stay_finite(name):
    config = vaekit.config.apply_overrides(
        tiny(), [*tiny_model_overrides(name), "train.max_steps=2", "train.batch_size=32"]
    )
    result = vaekit.train(config, log=lambda _: None)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    (epoch,) = result.history
    train_metrics = {k: v for k, v in epoch.items() if k.startswith(("train_", "val_"))}
    assert train_metrics and all(math.isfinite(v) for v in train_metrics.values())
    # The objective the trainer used is one the model supports, and it is finite.
    objective = build_objective(ObjectiveConfig(), result.model)
    x, y = _batch(result.model, 8)
    loss, _ = objective(result.model, x, y)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_evaluate_runs_and_reports_only_what_the_model_has(name):
    torch.manual_seed(0)
    dataset = load_dataset("digits")
    model = tiny_model(name, likelihood=dataset.default_likelihood)
    result = evaluate(model, dataset, num_samples=4, max_examples=20, fcd=False)
    assert result["num_examples"] == 20
    if model.has_likelihood:
        assert math.isfinite(result["nll"]) and math.isfinite(result["elbo"])
        assert result["units"]["nll"].startswith("nats per example")
    else:  # never a likelihood it does not have
        assert "nll" not in result and "elbo" not in result and "bits_per_dim" not in result
        assert result["likelihood"].startswith("none")


# The bounds hold in expectation: E[ELBO] <= E[IWAE_k] <= E[IWAE_K] for k < K (Burda et al.
# 2015, Theorem 1). Each is estimated as a mean over R independent replicates; an ordering
# may be violated by at most MARGIN standard errors of the difference of the two means.
REPLICATES, MARGIN = 200, 4.0


@pytest.mark.parametrize("name", [n for n in MODELS_UNDER_TEST if MODELS[n].has_likelihood])
def test_elbo_below_iwae_k_below_iwae_big_k(name, float64):
    torch.manual_seed(0)
    model = tiny_model(name).double().eval()
    x, y = _batch(model, 4)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x, y=y).elbo for _ in range(REPLICATES)])  # [R, B]
        iwae = {
            k: torch.stack([model.log_likelihood(x, k, y=y) for _ in range(REPLICATES)])
            for k in (5, 50)
        }
    for low, high in ((elbo, iwae[5]), (iwae[5], iwae[50])):
        diff = high - low  # [R, B]: positive in expectation
        stderr = diff.std(dim=0) / math.sqrt(REPLICATES)
        assert (diff.mean(dim=0) >= -MARGIN * stderr).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_resume_after_sigkill_is_bitwise(tmp_path, name):
    # digits: 1347 training examples / 256 = 6 steps per epoch (the last one partial), 12 in
    # all, checkpoints at steps 5, 6 (end of epoch 1), 10 and 12. Killed after step 8
    # (mid-epoch 2): steps 7 and 8, and the step record at 8, are redone from step 6.
    settings = [x for item in tiny_model_overrides(name) for x in ("--set", item)]
    args = [
        "--data", "digits", "--batch-size", "256", "--epochs", "2", "--device", "cpu",
        "--seed", "5", "--log-every", "2", "--checkpoint-every", "5", "--progress", "plain",
        "--set", "train.tensorboard=false", *settings,
    ]  # fmt: skip
    full, broken = tmp_path / "full", tmp_path / "broken"
    assert main(["train", *args, "--out", str(full)]) == 0
    killed = vaekit_cli(*args, "--out", str(broken), kill_after=8)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = vaekit_cli("--resume", str(broken))
    assert resumed.returncode == 0, resumed.stderr
    assert (broken / "model.safetensors").read_bytes() == (full / "model.safetensors").read_bytes()
    for name_ in ("model.safetensors", "optimizer.safetensors", "trainer.safetensors"):
        a, b = (run / "checkpoints" / "last" / name_ for run in (broken, full))
        assert a.read_bytes() == b.read_bytes(), name_
    assert metrics(broken) == metrics(full)


def test_labels_travel_from_the_dataset_to_the_objective(monkeypatch):
    """Every training batch reaches the objective with its own rows' labels."""
    from vaekit.training import parts as train_module  # where the Trainer looks it up

    seen = []

    def spying(config, model):
        objective = build_objective(config, model)

        def call(model_, x, y):
            seen.append((x.detach().clone(), y))
            return objective(model_, x, y)

        return call

    monkeypatch.setattr(train_module, "build_objective", spying)
    config = vaekit.config.apply_overrides(tiny(), ["train.max_steps=3", "train.batch_size=64"])
    vaekit.train(config, log=lambda _: None)
    data = load_dataset("digits")
    stored = data.train.x.flatten(1)  # grey levels 0..16; training sees them dequantised
    assert len(seen) == 3
    for x, y in seen:
        assert y is not None and y.shape == (x.shape[0],)
        levels = (x.flatten(1) * 17).floor()  # undo the dequantisation: the stored level
        for row, label in zip(levels, y, strict=True):
            matches = (stored == row).all(dim=1).nonzero().flatten()
            assert len(matches) >= 1 and label in data.train.y[matches]


def test_a_run_saved_before_models_had_their_own_configs_resumes(tmp_path):
    """An older run's model block lacks the fields added since (flow_steps, ...): it takes
    their defaults, and resuming it is not refused as a changed model."""
    import json

    run = tmp_path / "run"
    config = vaekit.config.apply_overrides(tiny(), ["train.max_steps=2"])
    vaekit.train(config, out=run, log=lambda _: None)
    for path in (run / "config.json", run / "checkpoints/last/config.json"):
        descriptor = json.loads(path.read_text())
        for block in (descriptor["model"], descriptor["config"]["model"]):
            for new_field in ("flow_steps", "num_pseudo_inputs"):
                block.pop(new_field)
        path.write_text(json.dumps(descriptor))
    from vaekit.training import run_config

    resumed = vaekit.config.apply_overrides(run_config(run), ["train.max_steps=4"])
    result = vaekit.train(resumed, resume=run, log=lambda _: None)
    assert result.model.config.flow_steps == 2 and result.steps[-1]["step"] == 4


@pytest.mark.parametrize("name", [n for n in model_names() if MODELS[n].has_likelihood])
def test_elbo_terms_become_floats_without_an_autograd_warning(name):
    """float(model.elbo(x)) and .means() are the batch means, read off the graph in training
    mode (pytest turns any warning into an error, so an autograd warning would fail here)."""
    import warnings

    torch.manual_seed(0)
    model = tiny_model(name).train()
    x = torch.rand(5, 1, 8, 8)
    y = torch.randint(0, 10, (5,)) if model.takes_labels else None
    terms = model.elbo(x, y=y)
    assert terms.elbo.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        means = terms.means()
        whole = float(terms)
    assert whole == means["elbo"] == terms.elbo.detach().mean().item()
    assert means["log_px_z"] == terms.log_px_z.detach().mean().item()
    assert means["kl"] == terms.kl.detach().mean().item()
