"""model.dropout: dropout on the hidden activations of the built encoder and decoder bodies,
in training mode only; 0 (the default) builds exactly the model built before it existed."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import vaekit
from vaekit.cli.main import main
from vaekit.config import Config
from vaekit.models import AE, VAE, AEConfig, VAEConfig
from vaekit.settings import ConfigError


def _vae(network: str, dropout: float, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    shape = [1, 8, 8] if network == "mlp" else [1, 28, 28]
    config = VAEConfig(latent_dim=3, network=network, hidden_dims=[16, 8], dropout=dropout)
    config.data_shape, config.likelihood = shape, "bernoulli"
    return VAE(config)


def _dropouts(model: nn.Module) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_zero_adds_no_layer_and_draws_no_random_number(network):
    """With p = 0 the model is the old one: the same layers under the same names, the same
    initial weights from the same seed, and a training-mode pass through the bodies draws
    nothing from the generator (so a whole run is bitwise the same)."""
    model = _vae(network, 0.0)
    assert _dropouts(model) == []
    x = (torch.rand(4, *model.config.data_shape) < 0.5).float()
    model.train()
    before = torch.get_rng_state()
    features = model.encoder(x)
    model.decoder(torch.zeros(4, 3))
    assert torch.equal(torch.get_rng_state(), before)
    with_dropout = _vae(network, 0.3)
    assert len(_dropouts(with_dropout)) == (2 + 2 if network == "mlp" else 3 + 3)
    same = zip(model.parameters(), with_dropout.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in same)  # dropout layers hold no weights
    assert features.shape == with_dropout.encoder(x).shape


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_it_changes_training_mode_outputs_but_not_evaluation_mode_ones(network):
    plain, dropped = _vae(network, 0.0), _vae(network, 0.5)
    x = (torch.rand(4, *plain.config.data_shape) < 0.5).float()
    z = torch.randn(2, 4, 3)  # [K, B, m]: importance samples keep their shape
    for model in (plain, dropped):
        model.eval()
    # Evaluation mode: deterministic, and the same function as without dropout.
    assert torch.equal(dropped.encoder(x), dropped.encoder(x))
    assert torch.equal(dropped.encoder(x), plain.encoder(x))
    assert torch.equal(dropped.decoder(z), plain.decoder(z))
    estimates = []
    for model in (dropped, plain):  # importance sampling: the same draws, the same numbers
        torch.manual_seed(1)
        estimates.append(model.log_likelihood(x, 8))
    assert torch.equal(*estimates)
    dropped.train()
    torch.manual_seed(2)
    first = dropped.decoder(z)
    assert not torch.equal(first, dropped.decoder(z))
    assert not torch.equal(first, plain.decoder(z))
    assert not torch.equal(dropped.encoder(x), plain.encoder(x))


def test_the_autoencoder_shares_it():
    config = AEConfig(latent_dim=2, network="mlp", hidden_dims=[8], dropout=0.25)
    config.data_shape, config.likelihood = [1, 4, 4], "bernoulli"
    assert _dropouts(AE(config)) == [0.25, 0.25]


@pytest.mark.parametrize(
    ("bad", "said"),
    [(-0.1, "be in [0, 1), got -0.1"), (1.0, "be in [0, 1), got 1.0"), (math.nan, "be a finite")],
)
def test_a_probability_outside_zero_to_one_is_refused_naming_the_field(bad, said):
    with pytest.raises(ConfigError) as refused:
        Config.from_dict({"model": {"kind": "vae", "dropout": bad}})
    assert str(refused.value).startswith(f"model.dropout must {said}")


def test_the_flag_is_refused_in_one_line_naming_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", "smoke", "--dropout", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "vaekit: error: --dropout: model.dropout must be in [0, 1), got 1.0"
    assert not out.exists()


def test_a_run_records_it_and_loads_it_back(tmp_path):
    run = tmp_path / "run"
    args = ["--set", "train.report=false", "--set", "train.tensorboard=false"]
    assert main(["train", "--config", "smoke", "--dropout", "0.2", "--out", str(run), *args]) == 0
    descriptor = json.loads((run / "config.json").read_text())
    assert descriptor["config"]["model"]["dropout"] == 0.2
    assert descriptor["model"]["dropout"] == 0.2
    model = vaekit.load(run)
    assert not model.training and set(_dropouts(model)) == {0.2}


def test_a_model_file_written_before_the_setting_loads_the_same_model(tmp_path):
    model = _vae("mlp", 0.0)
    vaekit.save(model, tmp_path / "m")
    descriptor = json.loads((tmp_path / "m" / "config.json").read_text())
    del descriptor["model"]["dropout"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(descriptor))
    loaded = vaekit.load(tmp_path / "m")
    assert loaded.config.dropout == 0.0 and _dropouts(loaded) == []
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), loaded.parameters(), strict=True)
    )


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_the_explorers_decoder_program_leaves_it_out(network):
    """The page decodes as evaluation does: the program of a decoder with dropout is the
    program of the same weights without it."""
    from vaekit.explore.decoder_spec import decoder_program

    plain, dropped = _vae(network, 0.0), _vae(network, 0.4)
    shape = tuple(plain.config.data_shape)
    layers, tensors = decoder_program(dropped.decoder, 3, shape)
    expected, weights = decoder_program(plain.decoder, 3, shape)
    assert layers == expected
    assert all(torch.equal(a, b) for a, b in zip(tensors, weights, strict=True))
