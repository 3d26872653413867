"""The evaluation's importance-sampled log p(x) (``vaekit.evaluation.importance``): the
compiled chunks give the model's own estimate at the same draws, only at their first shape,
fall back where compiling fails, and are made only where an evaluation can pay for them."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vaekit.evaluation.importance import (
    MIN_ROWS_TO_COMPILE,
    BernoulliMLPDensity,
    CompiledChunk,
    log_likelihood,
)
from vaekit.models import VAE, HierarchicalVAE, HVAEConfig, VAEConfig


def _vae(**options) -> VAE:
    torch.manual_seed(0)
    settings = dict(latent_dim=5, hidden_dims=[24, 16], network="mlp", data_shape=[1, 6, 5])
    return VAE(VAEConfig(**(settings | options))).eval()


def _binary(n: int = 6) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 1, 6, 5), 0.3), generator=torch.Generator())


@pytest.fixture
def compile_calls(monkeypatch) -> list:
    """torch.compile stood in by the traced function itself (a real compile takes tens of
    seconds): the shapes of ``z`` it was called with."""
    calls = []

    def fake_compile(fn, **_options):
        def run(z, x):
            calls.append(tuple(z.shape))
            return fn(z, x)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    return calls


@pytest.mark.parametrize("prior", ["standard-normal", "vamp"])
def test_compiled_chunks_give_the_models_estimate_at_the_same_draws(prior, compile_calls):
    model = _vae(likelihood="bernoulli", prior=prior, num_pseudo_inputs=9)
    with torch.no_grad():  # narrow, spread posteriors, as after training
        model.posterior.head.weight[:5] *= 20.0
        model.posterior.head.bias[5:] = -6.0
    x = _binary()
    torch.manual_seed(4)
    expected = model.log_likelihood(x, 30, 13)
    torch.manual_seed(4)
    got = log_likelihood(model, x, 30, 13, compiled=CompiledChunk.for_model(model))
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-3)
    assert compile_calls == [(13, 6, 5), (13, 6, 5)]  # the last chunk of 4 draws ran eager


def test_the_written_out_density_is_the_likelihoods_on_the_decoder_output():
    # grey levels as well as 0/1, one hidden layer and three
    for hidden in ([24], [24, 16, 12]):
        model = _vae(likelihood="bernoulli", hidden_dims=hidden)
        z = 3 * torch.randn(7, 4, 5)
        x = torch.rand(4, 1, 6, 5)
        x[:2] = x[:2].round()
        with torch.no_grad():
            expected = model.likelihood.log_density(model.decoder(z), x)
            got = BernoulliMLPDensity.for_model(model).log_density(z, x)
        assert got.shape == (7, 4)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_a_compile_that_fails_falls_back_to_the_models_own_code(monkeypatch):
    def failing_compile(fn, **_options):
        def run(z, x):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    model = _vae(likelihood="bernoulli", prior="vamp", num_pseudo_inputs=9)
    compiled = CompiledChunk.for_model(model)
    x = _binary()
    torch.manual_seed(4)
    expected = model.log_likelihood(x, 30, 13)
    torch.manual_seed(4)
    torch.testing.assert_close(
        log_likelihood(model, x, 30, 13, compiled=compiled), expected, rtol=0, atol=1e-4
    )
    assert compiled.failed


@pytest.mark.parametrize(
    "options",
    [
        dict(likelihood="gaussian-learned"),  # another likelihood
        dict(likelihood="bernoulli", activation="elu"),  # another activation
        dict(likelihood="bernoulli", network="conv", data_shape=[1, 8, 8]),  # another network
    ],
)
def test_models_off_the_written_out_density_are_never_compiled(options):
    model = _vae(**options)
    assert CompiledChunk.for_model(model) is None
    assert CompiledChunk.if_it_pays(model, 10_000, 5000) is None


def test_a_hierarchical_model_is_never_compiled():
    config = HVAEConfig(latent_dims=[4, 3], hidden_dims=[[16], [8]], data_shape=[12])
    model = HierarchicalVAE(dataclasses.replace(config, likelihood="bernoulli")).eval()
    assert CompiledChunk.for_model(model) is None


def test_an_evaluation_compiles_only_where_its_rows_can_pay_for_the_compile():
    model = _vae(likelihood="bernoulli", prior="vamp", num_pseudo_inputs=9)
    assert CompiledChunk.if_it_pays(model, 10_000, MIN_ROWS_TO_COMPILE // 10_000 - 1) is None
    assert isinstance(CompiledChunk.if_it_pays(model, 10_000, 5000), CompiledChunk)


def test_without_a_compiled_chunk_the_estimate_is_the_models_own():
    model = _vae(likelihood="bernoulli")
    x = _binary()
    torch.manual_seed(2)
    expected = model.log_likelihood(x, 20, 6)
    torch.manual_seed(2)
    assert torch.equal(log_likelihood(model, x, 20, 6), expected)


def test_fewer_than_one_draw_is_refused():
    model = _vae(likelihood="bernoulli")
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        log_likelihood(model, _binary(), 0, compiled=CompiledChunk.for_model(model))
