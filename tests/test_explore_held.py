"""`vaekit explore` on the deep hierarchical VAE, dense and convolutional: decode by group with
the other groups at their prior means, at a test example's posterior means, or at a prior draw.
"""

from __future__ import annotations

import pytest
import torch

from test_deep_hvae import randomise
from test_explore_browser import (  # noqa: F401 (browser: a fixture)
    _assert_canvas_is_decode,
    _change,
    _open,
    _page_z,
    _untrained,
    browser,
    needs_chromium,
)
from vaekit.checkpoint import load, save_model
from vaekit.data import load_dataset
from vaekit.explore import build_explorer
from vaekit.explore.decoder_spec import run_program
from vaekit.explore.spaces import HELD_DRAWS

DIMS = (3, 2, 2)


@pytest.fixture(scope="module")
def deep_pages(tmp_path_factory):
    """network -> (run, path of explore.html, embedded data): untrained deep-hvae models on
    digits (8x8; the conv stream is 2x2), their weights moved off their initial values."""
    root = tmp_path_factory.mktemp("explore-held")
    dataset = load_dataset("digits", None, 0.1, 0)
    out = {}
    for network, scale in (("mlp", 0.25), ("conv", 0.05)):  # deeper conv paths: smaller
        model = _untrained(
            "deep-hvae",
            f"model.latent_dims={list(DIMS)}",
            "model.width=6",
            'model.cell="gated"',
            f'model.network="{network}"',
        )
        randomise(model, seed=1, scale=scale)
        run = root / network
        save_model(model, run, data=dataset.info())
        page, data = build_explorer(run)
        path = run / "explore.html"
        path.write_text(page, encoding="utf-8")
        out[network] = (run, path, data)
    return out


def _shaped(data, layers):
    """The page's flat tensors shaped for ``run_program`` (linear and conv weights)."""
    weights = torch.from_numpy(data["arrays"]["weights"])
    tensors = [weights[offset : offset + size] for offset, size in data["decoder"]["tensors"]]

    def shape(program):
        for layer in program:
            if layer["type"] == "linear":
                tensors[layer["w"]] = tensors[layer["w"]].reshape(layer["out"], layer["in"])
            elif layer["type"] == "conv2d":
                kh, kw = layer["k"]
                w = tensors[layer["weight"]].reshape(layer["cout"], layer["cin"], kh, kw)
                tensors[layer["weight"]] = w
            elif layer["type"] in ("residual", "inject"):
                shape(layer["body"])

    shape(layers)
    return tensors


def _held_code(data, group: int, z: torch.Tensor, example=None, draw=None) -> torch.Tensor:
    """The full code ``[latent_dim]`` the page decodes: group ``group`` at ``z``, the others
    at test example ``example``'s posterior means (the map's) or at prior draw ``draw``."""
    if draw is not None:
        code = torch.from_numpy(data["arrays"]["held_draws"][draw]).double().clone()
    else:
        code = torch.cat(
            [torch.from_numpy(sp["mu"][example]).double() for sp in data["arrays"]["spaces"]]
        )
    offset = data["held"]["offsets"][group]
    code[offset : offset + z.shape[0]] = z
    return code


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_the_page_decodes_the_full_code_and_carries_prior_draws(deep_pages, network):
    run, _, data = deep_pages[network]
    model = load(run).float().eval()
    sizes = list(model.latent_layers)
    assert data["held"]["offsets"] == [0, sizes[0], sizes[0] + sizes[1]]
    assert data["held"]["input_dim"] == model.latent_dim == sum(sizes)
    if network == "conv":  # each group is channels on the 2x2 stream
        assert sizes == [4 * m for m in DIMS]
        assert any(layer["type"] == "upsample" for layer in data["held"]["layers"])
    layers = data["held"]["layers"]
    z = torch.randn(6, model.latent_dim, generator=torch.Generator().manual_seed(2))
    got = run_program(layers, _shaped(data, layers), data["decoder"]["mean"], z)
    with torch.no_grad():
        want = model.decode_mean(z).flatten(1)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    draws = torch.from_numpy(data["arrays"]["held_draws"])
    assert draws.shape == (HELD_DRAWS, model.latent_dim)
    with torch.no_grad():  # the page's seed (0): what sample() decodes from the same draws
        codes = model.sample_codes(HELD_DRAWS, torch.Generator().manual_seed(0))
        pictures = model.sample(HELD_DRAWS, torch.Generator().manual_seed(0))
    torch.testing.assert_close(draws, codes)
    torch.testing.assert_close(model.decode_mean(codes), pictures, atol=1e-5, rtol=1e-5)


def test_a_conv_groups_program_holds_the_others_at_their_prior_means(deep_pages):
    run, _, data = deep_pages["conv"]
    model = load(run).float().eval()
    generator = torch.Generator().manual_seed(3)
    for group, m in enumerate(model.latent_layers):
        layers = data["spaces"][group]["layers"]
        z = torch.randn(4, m, generator=generator)
        got = run_program(layers, _shaped(data, layers), data["decoder"]["mean"], z)
        with torch.no_grad():  # the model's own modules, top down
            s = model.start.expand(4, *model.state_shape)
            zs = [None] * len(DIMS)
            for g in range(len(DIMS) - 1, -1, -1):
                if g == group:
                    zs[g] = z
                elif g == len(DIMS) - 1:
                    zs[g] = model.prior.mean().expand(4, -1)
                else:
                    zs[g] = model.prior_heads[g](s).loc
                s = model.down[g](s + model.project[g](zs[g]))
            want = model.decode_mean(torch.cat(zs, dim=-1)).flatten(1)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


@needs_chromium
@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_the_page_holds_the_other_groups_as_chosen(browser, deep_pages, network):  # noqa: F811
    run, path, data = deep_pages[network]
    model = load(run).float().eval()
    _open(browser, path)
    options = browser.evaluate(
        "Array.from(document.querySelectorAll('#hold option'), o => o.value)"
    )
    assert options == ["means", "example", "draw"]
    assert browser.evaluate("document.getElementById('hold').value") == "means"
    generator = torch.Generator().manual_seed(7)
    for group in (2, 0):
        _change(browser, "layer", group)  # shows test example 0
        m = model.latent_layers[group]
        _change(browser, "hold", "example")
        z = 1.5 * torch.randn(m, generator=generator, dtype=torch.float64)
        browser.evaluate(f"window.vaekitExplorer.setZ({z.tolist()}, 'test', 5)")
        assert "test example 5's posterior means" in browser.evaluate(
            "document.getElementById('status').textContent"
        )
        code = _held_code(data, group, z, example=5)
        _assert_canvas_is_decode(browser, model, code)
        # a slider moves its group only; the others stay at example 5's means
        j = browser.evaluate("Number(document.querySelector('#sliders input').dataset.dim)")
        browser.evaluate(
            f"(() => {{ const s = document.getElementById('z{j}'); s.value = 900;"
            "s.dispatchEvent(new Event('input')); })()"
        )
        _assert_canvas_is_decode(browser, model, _held_code(data, group, _page_z(browser), 5))
        # prior draws: the one chosen last (the first, at first), then "another draw"
        _change(browser, "hold", "draw")
        z, k = _page_z(browser), (0 if group == 2 else 1)
        assert browser.evaluate("window.vaekitExplorer.state.draw") == k
        _assert_canvas_is_decode(browser, model, _held_code(data, group, z, draw=k))
        browser.evaluate("document.getElementById('next-draw').click()")
        status = browser.evaluate("document.getElementById('status').textContent")
        assert f"prior draw {k + 2} of {HELD_DRAWS}" in status
        _assert_canvas_is_decode(browser, model, _held_code(data, group, z, draw=k + 1))
        _change(browser, "hold", "means")
        with torch.no_grad():
            path_decoder = model.group_decoder(group)

        def decode(zg, path_decoder=path_decoder):
            return model.likelihood.mean(path_decoder(zg))

        _assert_canvas_is_decode(browser, model, z, decode)
