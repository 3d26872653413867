"""Model files: safetensors + JSON round trip, and refusal of anything damaged."""

import json

import pytest
import torch

import vaekit
from vaekit.checkpoint import CheckpointError
from vaekit.models import AE, VAE


def _config(cls=VAE, **kwargs):
    base = dict(latent_dim=3, hidden_dims=[16], data_shape=[1, 28, 28], likelihood="bernoulli")
    base.update(kwargs)
    return cls.config_class(**base)


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (VAE, {}),
        (VAE, {"posterior": "full", "likelihood": "gaussian-learned", "network": "mlp"}),
        (VAE, {"likelihood": "gaussian-heteroscedastic"}),  # conv, 2 output channels
        (AE, {"likelihood": "gaussian"}),
    ],
)
def test_save_load_round_trip_gives_identical_outputs(tmp_path, cls, kwargs):
    torch.manual_seed(0)
    model = cls(_config(cls, **kwargs)).eval()
    vaekit.save(model, tmp_path / "m", metadata={"note": "test"})
    loaded = vaekit.load(tmp_path / "m")
    assert type(loaded) is cls
    x = torch.rand(4, 1, 28, 28).round()
    assert torch.equal(model.reconstruct(x), loaded.reconstruct(x))
    z = torch.randn(5, 3)
    assert torch.equal(model.decode_mean(z), loaded.decode_mean(z))
    if cls is VAE:
        torch.manual_seed(1)
        a = model.log_likelihood(x, 10)
        torch.manual_seed(1)
        assert torch.equal(a, loaded.log_likelihood(x, 10))
    descriptor = json.loads((tmp_path / "m" / "config.json").read_text())
    assert descriptor["model"]["network"] == ("mlp" if "network" in kwargs else "conv")
    assert descriptor["metadata"] == {"note": "test"}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    vaekit.save(VAE(_config(network="mlp")), tmp_path / "m")
    return tmp_path / "m"


def test_tampered_weights_are_refused(saved):
    weights = saved / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF  # one flipped bit inside a tensor
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        vaekit.load(saved)


def test_truncated_weights_are_refused(saved):
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        vaekit.load(saved)


def test_weights_not_matching_the_config_are_refused(saved):
    descriptor = json.loads((saved / "config.json").read_text())
    descriptor["model"]["latent_dim"] = 4
    (saved / "config.json").write_text(json.dumps(descriptor))
    with pytest.raises(CheckpointError, match="shape"):
        vaekit.load(saved)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda d: (d / "config.json").unlink(), "missing"),
        (lambda d: (d / "config.json").write_text("{not json"), "corrupt JSON"),
        (lambda d: (d / "config.json").write_text('{"format": "other"}'), "not a vaekit model"),
        (lambda d: (d / "model.safetensors").unlink(), "missing weights"),
    ],
)
def test_damaged_model_directories_give_clear_errors(saved, damage, message):
    damage(saved)
    with pytest.raises(CheckpointError, match=message):
        vaekit.load(saved)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such model directory"):
        vaekit.load(tmp_path / "nope")


def test_custom_networks_are_passed_back_in(tmp_path):
    from torch import nn

    class Tiny(nn.Module):
        out_features = 4

        def __init__(self):
            super().__init__()
            self.net = nn.Linear(6, 4)

        def forward(self, x):
            return self.net(x)

    config = _config(latent_dim=2, hidden_dims=[4], data_shape=[6], likelihood="gaussian")
    torch.manual_seed(0)
    model = VAE(config, encoder=Tiny(), decoder=nn.Linear(2, 6))
    vaekit.save(model, tmp_path / "m")
    loaded = vaekit.load(tmp_path / "m", encoder=Tiny(), decoder=nn.Linear(2, 6))
    x = torch.randn(3, 6)
    assert torch.equal(model.reconstruct(x), loaded.reconstruct(x))


def test_an_ae_saved_in_the_flat_model_format_still_loads(tmp_path):
    """Before each model had its own config, an AE's block carried the VAE's unused
    posterior and prior; reading migrates it."""
    torch.manual_seed(0)
    model = AE(_config(AE, network="mlp")).eval()
    vaekit.save(model, tmp_path / "m", config={"model": vaekit.config.to_dict(model.config)})
    path = tmp_path / "m" / "config.json"
    descriptor = json.loads(path.read_text())
    for block in (descriptor["model"], descriptor["config"]["model"]):
        block |= {"posterior": "diagonal", "prior": "standard-normal"}
    path.write_text(json.dumps(descriptor))
    loaded = vaekit.load(tmp_path / "m")
    assert type(loaded) is AE and loaded.config == model.config
    assert vaekit.config.model_config_from_dict(descriptor["config"]["model"]) == model.config
    x = torch.rand(2, 1, 28, 28).round()
    assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))
    descriptor["model"]["latent_dims"] = [3]  # a field no model of this kind has
    path.write_text(json.dumps(descriptor))
    with pytest.raises(CheckpointError, match="latent_dims"):
        vaekit.load(tmp_path / "m")
