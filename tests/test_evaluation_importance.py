"""The evaluation's importance-sampled log p(x) (``vaekit.evaluation.importance``): the fused
inner loop gives the model's own estimate at the same draws, and every model it does not
fit takes the model's own code."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vaekit.evaluation.importance import CompiledChunk, FusedBernoulliMLP, log_likelihood
from vaekit.models import VAE, HierarchicalVAE, HVAEConfig, VAEConfig


def _vae(**options) -> VAE:
    torch.manual_seed(0)
    settings = dict(latent_dim=5, hidden_dims=[24, 16], network="mlp", data_shape=[1, 6, 5])
    return VAE(VAEConfig(**(settings | options))).eval()


def _binary(n: int = 6) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 1, 6, 5), 0.3), generator=torch.Generator())


@pytest.mark.parametrize("prior", ["standard-normal", "vamp"])
def test_fused_estimate_is_the_models_estimate_at_the_same_draws(prior):
    model = _vae(likelihood="bernoulli", prior=prior, num_pseudo_inputs=9)
    with torch.no_grad():  # narrow, spread posteriors, as after training
        model.posterior.head.weight[:5] *= 20.0
        model.posterior.head.bias[5:] = -6.0
    assert FusedBernoulliMLP.for_model(model) is not None
    x = _binary()
    torch.manual_seed(4)
    expected = model.log_likelihood(x, 60, 13)
    torch.manual_seed(4)
    got = log_likelihood(model, x, 60, 13)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-3)


def test_fused_log_density_is_the_likelihoods_on_the_decoder_output():
    # grey levels as well as 0/1, one hidden layer and three: the algebra holds for any x
    for hidden in ([24], [24, 16, 12]):
        model = _vae(likelihood="bernoulli", hidden_dims=hidden)
        z = 3 * torch.randn(7, 4, 5)
        x = torch.rand(4, 1, 6, 5)
        x[:2] = x[:2].round()
        with torch.no_grad():
            expected = model.likelihood.log_density(model.decoder(z), x)
        got = FusedBernoulliMLP.for_model(model).log_density(z, x)
        assert got.shape == (7, 4)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "options",
    [
        dict(likelihood="gaussian-learned"),  # another likelihood
        dict(likelihood="bernoulli", activation="elu"),  # another activation
        dict(likelihood="bernoulli", network="conv", data_shape=[1, 8, 8]),  # another network
    ],
)
def test_models_the_fused_path_does_not_fit_take_their_own_code(options):
    model = _vae(**options)
    assert FusedBernoulliMLP.for_model(model) is None
    x = torch.rand(3, *model.data_shape)
    torch.manual_seed(2)
    expected = model.log_likelihood(x, 20, 6)
    torch.manual_seed(2)
    assert torch.equal(log_likelihood(model, x, 20, 6), expected)


def test_a_hierarchical_model_takes_its_own_code():
    torch.manual_seed(0)
    config = HVAEConfig(latent_dims=[4, 3], hidden_dims=[[16], [8]], data_shape=[12])
    model = HierarchicalVAE(dataclasses.replace(config, likelihood="bernoulli")).eval()
    assert FusedBernoulliMLP.for_model(model) is None
    x = _binary(3).reshape(3, -1)[:, :12]
    torch.manual_seed(2)
    expected = model.log_likelihood(x, 20, 6)
    torch.manual_seed(2)
    assert torch.equal(log_likelihood(model, x, 20, 6), expected)


def test_fewer_than_one_draw_is_refused():
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        log_likelihood(_vae(likelihood="bernoulli"), _binary(), 0)


def _record_like() -> VAE:
    return _vae(likelihood="bernoulli", prior="vamp", num_pseudo_inputs=9)


def test_compiled_chunks_run_at_the_first_shape_only_and_give_the_models_estimate(monkeypatch):
    # torch.compile stood in by the traced function itself (compiling takes tens of seconds):
    # what is checked is which chunks take it, and the out-of-place form's numbers
    calls = []

    def fake_compile(fn, **_options):
        def run(z, x):
            calls.append(tuple(z.shape))
            return fn(z, x)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = _record_like()
    compiled = CompiledChunk.for_model(model)
    x = _binary()
    torch.manual_seed(4)
    expected = model.log_likelihood(x, 30, 13)
    torch.manual_seed(4)
    got = log_likelihood(model, x, 30, 13, compiled=compiled)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-3)
    assert calls == [(13, 6, 5), (13, 6, 5)]  # the last chunk of 4 draws ran eager


def test_a_compile_that_fails_falls_back_to_the_eager_chunks(monkeypatch):
    def failing_compile(fn, **_options):
        def run(z, x):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    model = _record_like()
    compiled = CompiledChunk.for_model(model)
    x = _binary()
    torch.manual_seed(4)
    expected = log_likelihood(model, x, 30, 13)
    torch.manual_seed(4)
    assert torch.equal(log_likelihood(model, x, 30, 13, compiled=compiled), expected)
    assert compiled.failed


def test_no_compiled_chunk_for_a_model_off_the_fused_path():
    assert CompiledChunk.for_model(_vae(likelihood="gaussian-learned")) is None
