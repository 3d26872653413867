"""`vaekit explore`: the page's in-browser decoder against PyTorch, in headless Chromium.

Chromium is driven over the DevTools protocol (tests/chromium.py, a pipe: nothing to
install beyond Chromium). Runs are tiny digits models trained a few steps, or saved untrained.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from chromium import Chromium, find_chromium
from helpers import LIKELIHOOD_NAMES, tiny, tiny_model_overrides
from test_deep_hvae import prior_mean_path, randomise
from vaekit.checkpoint import load, save_model
from vaekit.cli import main
from vaekit.config import Config, apply_overrides, to_dict
from vaekit.data import load_dataset
from vaekit.evaluate import load_run
from vaekit.evaluation.latent_statistics import latent_statistics
from vaekit.explore import UnsupportedLayerError, build_explorer, decoder_program
from vaekit.explore.decoder_spec import Programs, run_program
from vaekit.models import VAE, VAEConfig, build_model
from vaekit.training import train

NO_CHROMIUM = find_chromium() is None
needs_chromium = pytest.mark.skipif(
    NO_CHROMIUM, reason="Chromium is not installed (scripts/ensure-chromium.sh installs it)"
)


def _quiet(_line: str) -> None:
    pass


def _train_run(config, out):
    """Train in memory and save the model as a run (no report: it would evaluate)."""
    model = train(config, log=_quiet).model
    dataset = load_dataset(config.data.name, None, config.data.val_fraction, config.data.split_seed)
    save_model(model, out, data=dataset.info(), config=to_dict(config))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> run dir: MLP VAE, conv VAE, AE (digits, trained 3 steps), and a Bernoulli VAE
    saved untrained (digits is grey-level, so a Bernoulli model is never trained on it; it
    only exercises the page's sigmoid mean)."""
    root = tmp_path_factory.mktemp("explore")
    torch.manual_seed(0)
    out = {}
    common = ("model.latent_dim=5", "train.max_steps=3", "train.epochs=1")
    for name, extra in {
        "mlp": ("model.hidden_dims=[24,16]", "model.activation=elu"),
        "conv": ("model.network=conv", "model.hidden_dims=[24]", "model.activation=gelu"),
        "ae": ("model.kind=ae", "objective.name=reconstruction"),
    }.items():
        out[name] = _train_run(tiny(*common, *extra), root / name)
    dataset = load_dataset("digits", None, 0.1, 0)
    config = VAEConfig(
        latent_dim=3, network="mlp", hidden_dims=[16], activation="silu",
        likelihood="bernoulli", data_shape=[1, 8, 8],
    )  # fmt: skip
    save_model(VAE(config), root / "bernoulli", data=dataset.info())
    out["bernoulli"] = root / "bernoulli"
    # The other registered models, saved untrained (the pages' arithmetic is what is tested).
    cvae = _untrained("cvae", 'model.prior="conditional"', likelihood="bernoulli")
    with torch.no_grad():  # a learned p(z|y) away from N(0, I), so the KL's prior matters
        cvae.conditional_prior.table.weight.normal_(0.0, 0.5)
    hvae = _untrained("hvae", "model.latent_dims=[4, 3, 2]", "model.hidden_dims=[[16], [8], [8]]")
    vqvae = _untrained("vqvae", "model.num_latents=3", "model.codebook_size=6")
    deep = _untrained(
        "deep-hvae", "model.latent_dims=[3, 2, 2]", "model.width=12", 'model.cell="gated"'
    )
    randomise(deep, seed=1)  # its cells and prior heads start at zero: too simple to test
    models = {"cvae": cvae, "hvae": hvae, "vqvae": vqvae, "deep-hvae": deep}
    for name, model in models.items():
        save_model(model, root / name, data=dataset.info())
        out[name] = root / name
    return out


def _untrained(name: str, *settings: str, likelihood: str = "gaussian"):
    """Model ``name`` for digits with its tiny test settings and ``settings``, untrained."""
    config = apply_overrides(
        Config(),
        [
            *tiny_model_overrides(name),
            *settings,
            "model.data_shape=[1, 8, 8]",
            f'model.likelihood="{likelihood}"',
        ],
    )
    return build_model(config.model)


@pytest.fixture(scope="module")
def pages(runs):
    """name -> (path of explore.html, embedded data)."""
    out = {}
    for name, run in runs.items():
        page, data = build_explorer(run)
        path = run / "explore.html"
        path.write_text(page, encoding="utf-8")
        out[name] = (path, data)
    return out


@pytest.fixture(scope="module")
def browser():
    if NO_CHROMIUM:
        pytest.skip("Chromium is not installed (scripts/ensure-chromium.sh installs it)")
    with Chromium(width=1280, height=900) as chromium:
        yield chromium


def _open(browser: Chromium, path) -> None:
    browser.events.clear()
    browser.open(path.as_uri())
    assert browser.evaluate("window.vaekitExplorer && window.vaekitExplorer.ready") is True
    errors = [e for e in browser.events if e["method"] == "Runtime.exceptionThrown"]
    assert not errors, errors


def _canvas(browser: Chromium, canvas_id: str = "decoded") -> np.ndarray:
    """The canvas's RGBA pixels, ``[H, W, 4]`` uint8, read with getImageData."""
    values = browser.evaluate(
        f"(() => {{ const c = document.getElementById('{canvas_id}');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); })()"
    )
    h = browser.evaluate(f"document.getElementById('{canvas_id}').height")
    return np.asarray(values, dtype=np.uint8).reshape(h, -1, 4)


def _page_z(browser: Chromium) -> torch.Tensor:
    z = browser.evaluate("Array.from(window.vaekitExplorer.state.z)")
    return torch.tensor(z, dtype=torch.float64)


def _expected_pixels(model, z: torch.Tensor, decode=None) -> np.ndarray:
    """What the canvas must show for z: E[x|z] clipped to [0, 1] in 8 bits, ``[H, W, 3]``.
    ``decode`` maps ``z [1, m]`` to E[x|z] (default: the model's ``decode_mean``)."""
    decode = decode or model.decode_mean
    with torch.no_grad():
        mean = decode(z.float()[None])[0]  # [C, H, W]
    pixels = (mean.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def _assert_canvas_is_decode(browser: Chromium, model, z: torch.Tensor, decode=None) -> None:
    canvas = _canvas(browser).astype(int)
    want = _expected_pixels(model, z, decode).astype(int)
    assert canvas.shape[:2] == want.shape[:2]
    assert (canvas[..., 3] == 255).all()
    assert np.abs(canvas[..., :3] - want).max() <= 1  # within 1/255


# --- the decoder program (no browser) -------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "conv", "ae", "bernoulli"])
def test_program_reproduces_the_decoder_in_torch(runs, name):
    model = load(runs[name])
    layers, tensors = decoder_program(model.decoder, model.latent_dim, model.likelihood.param_shape)
    z = torch.randn(7, model.latent_dim)
    got = run_program(layers, tensors, model.likelihood.page_mean(), z)
    with torch.no_grad():
        want = model.decode_mean(z).flatten(1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_unsupported_layer_is_named():
    decoder = nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.Linear(8, 4))
    with pytest.raises(UnsupportedLayerError, match=r"decoder\.1 \(LayerNorm\)"):
        decoder_program(decoder, 3, (4,))


def test_cli_names_an_unsupported_layer_and_writes_nothing(runs, tmp_path, capsys, monkeypatch):
    """As if the page had no ELU: the command stops with one line naming the decoder's layer."""
    from vaekit.explore import decoder_spec

    real = decoder_spec._activation
    monkeypatch.setattr(
        decoder_spec, "_activation", lambda m: None if isinstance(m, nn.ELU) else real(m)
    )
    out = tmp_path / "page.html"
    assert main(["explore", str(runs["mlp"]), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("vaekit: error: the in-page decoder cannot run decoder.body.1 (ELU)")
    assert not out.exists()


# How the page turns each likelihood's parameters into E[x|z]; None: it cannot.
PAGE_MEANS = {
    "bernoulli": "sigmoid",
    "gaussian": "identity",
    "gaussian-learned": "identity",
    "gaussian-shared": "identity",
    "gaussian-heteroscedastic": "split",
    "discretized-logistic": "split-clamp",
    "discretized-logistic-mixture": None,
    "gaussian-lowrank": None,
}


@pytest.mark.parametrize("likelihood", LIKELIHOOD_NAMES)
def test_each_likelihood_names_the_mean_the_page_computes(likelihood):
    assert set(PAGE_MEANS) == set(LIKELIHOOD_NAMES)
    config = VAEConfig(
        latent_dim=2, network="mlp", hidden_dims=[8], likelihood=likelihood,
        data_shape=[1, 2, 3], data_levels=256,
    )  # fmt: skip
    model = VAE(config)
    mean = model.likelihood.page_mean()
    assert mean == PAGE_MEANS[likelihood]
    if mean is None:  # refused in one line naming the likelihood
        name = type(model.likelihood).__name__
        with pytest.raises(UnsupportedLayerError, match=f"mean of the likelihood {name}$"):
            Programs(model.likelihood)
        return
    layers, tensors = decoder_program(model.decoder, 2, model.likelihood.param_shape)
    z = torch.randn(3, 2)
    with torch.no_grad():
        want = model.decode_mean(z).flatten(1)
    torch.testing.assert_close(run_program(layers, tensors, mean, z), want, atol=1e-5, rtol=1e-5)


def test_heteroscedastic_mean_is_the_first_half(tmp_path):
    dataset = load_dataset("digits", None, 0.1, 0)
    config = VAEConfig(
        latent_dim=2, network="conv", hidden_dims=[16], likelihood="gaussian-heteroscedastic",
        data_shape=[1, 8, 8],
    )  # fmt: skip
    model = VAE(config)
    layers, tensors = decoder_program(model.decoder, 2, model.likelihood.param_shape)
    z = torch.randn(3, 2)
    got = run_program(layers, tensors, model.likelihood.page_mean(), z)
    with torch.no_grad():
        torch.testing.assert_close(got, model.decode_mean(z).flatten(1), atol=1e-5, rtol=1e-5)
    save_model(model, tmp_path / "het", data=dataset.info())
    _, data = build_explorer(tmp_path / "het")
    assert data["decoder"]["mean"] == "split"


def test_sliders_are_ordered_by_test_set_kl(runs, pages):
    _, data = pages["mlp"]
    model = load(runs["mlp"])
    dataset = load_dataset("digits", None, 0.1, 0)
    stats = latent_statistics(model, dataset.fixed("test", seed=0))
    np.testing.assert_allclose(data["stat"], stats["kl_per_dim"], rtol=1e-6, atol=1e-9)
    assert data["stat_kind"] == "kl" and data["stat_examples"] == len(dataset.test)
    assert data["order"] == sorted(range(5), key=lambda j: -stats["kl_per_dim"][j])


def test_cli_writes_the_page_and_refuses_bad_flags(runs, tmp_path, capsys):
    out = tmp_path / "x.html"
    assert main(["explore", str(runs["mlp"]), "-o", str(out), "--axes", "1,3"]) == 0
    text = out.read_text()
    assert "vaekitExplorer" in text and '"kind":"axes","axes":[1,3]' in text
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    assert main(["explore", str(runs["mlp"]), "-o", str(tmp_path / "y.html"), "--axes", "0,9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vaekit: error: --axes: coordinate 9 does not exist (latent_dim is 5)"]
    assert not (tmp_path / "y.html").exists()
    assert main(["explore", str(tmp_path / "missing")]) == 2
    assert "no such model directory" in capsys.readouterr().err


def test_report_links_to_the_explorer():
    from vaekit.report.html import render_report

    page = render_report("t", {}, None, [], explorer=True)
    assert "href='explore.html'" in page and "vaekit explore" in page
    page = render_report("t", {}, None, [])  # no explore.html yet: how to write it, no link
    assert "href='explore.html'" not in page and "run <code>vaekit explore RUN</code>" in page


# --- in the browser -------------------------------------------------------------------------


@needs_chromium
def test_page_loads_with_the_network_disabled(browser, pages):
    path, _ = pages["mlp"]
    browser.send("Network.enable")
    browser.send(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    try:
        browser.events.clear()
        _open(browser, path)
        requested = [
            e["params"]["request"]["url"]
            for e in browser.events
            if e["method"] == "Network.requestWillBeSent"
        ]
        assert all(url.startswith(("file:", "data:")) for url in requested), requested
        assert not [e for e in browser.events if e["method"] == "Runtime.exceptionThrown"]
        assert browser.evaluate("window.vaekitExplorer.state.frames") >= 1
    finally:
        browser.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1,
        })  # fmt: skip
        browser.send("Network.disable")


@needs_chromium
@pytest.mark.parametrize("name", ["mlp", "conv", "bernoulli"])
def test_canvas_equals_the_pytorch_decoder(browser, runs, pages, name):
    """For random z: the page's decode equals torch's E[x|z] to float32 noise, and the canvas
    equals it in 8 bits to within 1/255."""
    path, _ = pages[name]
    model = load(runs[name])
    _open(browser, path)
    _assert_canvas_is_decode(browser, model, _page_z(browser))  # the first test example
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        z = 1.5 * torch.randn(model.latent_dim, generator=generator, dtype=torch.float64)
        browser.evaluate(f"window.vaekitExplorer.setZ({z.tolist()}, 'test')")
        _assert_canvas_is_decode(browser, model, z)
        got = torch.tensor(
            browser.evaluate(f"Array.from(window.vaekitExplorer.decode({z.tolist()}))")
        )
        with torch.no_grad():
            want = model.decode_mean(z.float()[None]).flatten()
        torch.testing.assert_close(got.float(), want, atol=2e-5, rtol=1e-4)


def _slider_thumb(browser: Chromium, dim: int) -> tuple[float, float, float, float]:
    return tuple(
        browser.evaluate(
            f"(() => {{ const e = document.getElementById('z{dim}'); e.scrollIntoView();"
            "const r = e.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; })()"
        )
    )


@needs_chromium
def test_dragging_a_slider_changes_the_canvas(browser, runs, pages):
    path, data = pages["mlp"]
    model = load(runs["mlp"])
    _open(browser, path)
    before = _canvas(browser)
    z_before = _page_z(browser)
    dim = data["order"][0]  # the coordinate with the largest KL
    left, right, top, bottom = _slider_thumb(browser, dim)
    y = (top + bottom) / 2
    value = browser.evaluate(f"document.getElementById('z{dim}').valueAsNumber") / 1000
    x = left + 8 + value * (right - left - 16)  # the thumb's centre
    browser.mouse("mouseMoved", x, y, buttons=0)
    browser.mouse("mousePressed", x, y)
    for step in range(1, 6):  # drag to the right end
        browser.mouse("mouseMoved", x + step * (right - x) / 5, y)
    browser.mouse("mouseReleased", right, y, buttons=0)
    z_after = _page_z(browser)
    moved = (z_after - z_before).abs()
    assert moved[dim] > 0.5 and moved.sum() == moved[dim]  # only that coordinate moved
    after = _canvas(browser)
    assert np.abs(after.astype(int) - before.astype(int)).max() > 0
    _assert_canvas_is_decode(browser, model, z_after)
    label = browser.evaluate(
        f"document.getElementById('z{dim}').parentElement.querySelector('.stat').textContent"
    )
    assert label == f"#1: KL {data['stat'][dim]:.3f} nats"


def _map_pixel_to_viewport(browser: Chromium, px: float, py: float) -> tuple[float, float]:
    left, top, width, height = browser.evaluate(
        "(() => { const m = document.getElementById('map'); m.scrollIntoView();"
        "const r = m.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
    )
    view = browser.evaluate("window.vaekitExplorer.view")
    return left + px * width / view["width"], top + py * height / view["height"]


@needs_chromium
def test_clicking_the_map_decodes_the_clicked_point(browser, runs, pages):
    path, data = pages["mlp"]
    model = load(runs["mlp"])
    _open(browser, path)
    view = browser.evaluate("window.vaekitExplorer.view")
    coords = data["arrays"]["coords"].astype(np.float64)
    to_px = lambda a, b: (  # noqa: E731
        (a - view["x0"]) / (view["x1"] - view["x0"]) * view["width"],
        (1 - (b - view["y0"]) / (view["y1"] - view["y0"])) * view["height"],
    )
    points = np.array([to_px(a, b) for a, b in coords])
    # An empty spot: the grid pixel farthest from every test example.
    grid = np.stack(np.meshgrid(np.arange(10, 430, 7.0), np.arange(10, 430, 7.0)), -1).reshape(
        -1, 2
    )
    distance = np.linalg.norm(grid[:, None] - points[None], axis=2).min(axis=1)
    px, py = grid[distance.argmax()]
    assert distance.max() > 6
    browser.click(*_map_pixel_to_viewport(browser, px, py))
    pick = browser.evaluate("window.vaekitExplorer.lastPick")
    assert pick["index"] is None
    # The clicked pixel in map coordinates, and z = centre + a v1 + b v2 (PCA), in Python.
    a = view["x0"] + px / view["width"] * (view["x1"] - view["x0"])
    b = view["y0"] + (1 - py / view["height"]) * (view["y1"] - view["y0"])
    pixel = (view["x1"] - view["x0"]) / view["width"], (view["y1"] - view["y0"]) / view["height"]
    assert abs(pick["a"] - a) <= pixel[0] and abs(pick["b"] - b) <= pixel[1]  # the same pixel
    centre = np.array(data["map"]["centre"])
    v1, v2 = np.array(data["map"]["components"])
    z = torch.tensor(centre + pick["a"] * v1 + pick["b"] * v2)
    torch.testing.assert_close(_page_z(browser), z, atol=1e-9, rtol=1e-9)
    _assert_canvas_is_decode(browser, model, _page_z(browser))
    assert browser.evaluate("document.getElementById('input-figure').hidden") is True

    # A click on a test example: its posterior mean, input beside reconstruction.
    i = 7
    browser.mouse("mouseMoved", 1, 1, buttons=0)  # leave the map first
    browser.click(*_map_pixel_to_viewport(browser, *points[i]))
    pick = browser.evaluate("window.vaekitExplorer.lastPick")
    picked = pick["index"]
    assert picked is not None and np.linalg.norm(points[picked] - points[i]) <= 4
    mu = torch.from_numpy(data["arrays"]["mu"][picked]).double()
    torch.testing.assert_close(_page_z(browser), mu, atol=1e-6, rtol=0)
    _assert_canvas_is_decode(browser, model, mu)
    assert browser.evaluate("document.getElementById('input-figure').hidden") is False
    x = load_dataset("digits", None, 0.1, 0).fixed("test", seed=0)[picked]
    shown = _canvas(browser, "input")[..., 0].astype(int)
    want = (x[0].clamp(0, 1) * 255).round().int().numpy()
    assert np.abs(shown - want).max() <= 1


@needs_chromium
def test_interpolation_runs_between_two_examples(browser, runs, pages):
    path, data = pages["conv"]
    model = load(runs["conv"])
    _open(browser, path)
    api = "window.vaekitExplorer"
    browser.evaluate(f"{api}.setZ({api}.example(3), 't', 3)")
    browser.evaluate("document.getElementById('set-a').click()")
    browser.evaluate(f"{api}.setZ({api}.example(11), 't', 11)")
    browser.evaluate("document.getElementById('set-b').click()")
    browser.evaluate(
        "(() => { const s = document.getElementById('interp'); s.value = 250;"
        "s.dispatchEvent(new Event('input')); })()"
    )
    mu = torch.from_numpy(data["arrays"]["mu"]).double()
    z = 0.75 * mu[3] + 0.25 * mu[11]
    torch.testing.assert_close(_page_z(browser), z, atol=1e-6, rtol=0)
    _assert_canvas_is_decode(browser, model, z)


@needs_chromium
def test_autoencoder_sliders_are_ordered_by_code_variance(browser, pages):
    path, data = pages["ae"]
    assert data["stat_kind"] == "variance" and data["capabilities"]["has_kl"] is False
    _open(browser, path)
    note = browser.evaluate("document.getElementById('sliders-note').textContent")
    assert "no KL" in note and "variance" in note
    stats = browser.evaluate(
        "Array.from(document.querySelectorAll('#sliders input')).map(e => Number(e.dataset.stat))"
    )
    assert stats == sorted(stats, reverse=True) and len(stats) == 5
    assert not math.isclose(stats[0], stats[-1])


@needs_chromium
def test_table_row_is_shown_in_the_users_units(browser, tmp_path):
    """A standardised CSV table: the page shows the decoded row as v = x * std + mean."""
    generator = np.random.default_rng(0)
    rows = generator.normal([100.0, -3.0, 0.5], [20.0, 1.0, 0.01], size=(120, 3))
    lines = ["height,temperature,ratio"] + [",".join(f"{v:.5f}" for v in r) for r in rows]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    config = tiny(
        f"data.name={tmp_path / 't.csv'}", "model.latent_dim=2", "train.max_steps=3",
        "model.likelihood=gaussian",
    )  # fmt: skip
    _train_run(config, tmp_path / "run")
    page, data = build_explorer(tmp_path / "run")
    assert data["display"]["kind"] == "table" and "mean" in data["display"]
    (tmp_path / "explore.html").write_text(page, encoding="utf-8")
    _open(browser, tmp_path / "explore.html")
    cells = browser.evaluate(
        "Array.from(document.querySelectorAll('#row-table tr')).slice(1).map(r => "
        "[r.querySelector('th').textContent, Number(r.querySelector('td').dataset.value)])"
    )
    model = load(tmp_path / "run")
    with torch.no_grad():
        x = model.decode_mean(_page_z(browser).float()[None])[0].double()
    mean = torch.tensor(data["display"]["mean"])
    std = torch.tensor(data["display"]["std"])
    assert [name for name, _ in cells] == ["height", "temperature", "ratio"]
    torch.testing.assert_close(
        torch.tensor([v for _, v in cells], dtype=torch.float64), x * std + mean,
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    assert abs(cells[0][1]) > 10  # user units, not standardised ones


# --- the per-model sections -----------------------------------------------------------------


def _change(browser: Chromium, element_id: str, value: int) -> None:
    """Choose ``value`` in the <select> ``element_id`` as a user would (a change event)."""
    browser.evaluate(
        f"(() => {{ const s = document.getElementById('{element_id}'); s.value = '{value}';"
        "s.dispatchEvent(new Event('change')); })()"
    )


def _click_example(browser: Chromium, data, i: int) -> int:
    """Click test example i's point on the map; returns the index the page picked."""
    view = browser.evaluate("window.vaekitExplorer.view")
    a, b = data["arrays"]["coords"][i].astype(np.float64)
    px = (a - view["x0"]) / (view["x1"] - view["x0"]) * view["width"]
    py = (1 - (b - view["y0"]) / (view["y1"] - view["y0"])) * view["height"]
    browser.mouse("mouseMoved", 1, 1, buttons=0)
    browser.click(*_map_pixel_to_viewport(browser, px, py))
    picked = browser.evaluate("window.vaekitExplorer.lastPick")["index"]
    assert picked is not None
    return picked


def _test_labels() -> torch.Tensor:
    return load_dataset("digits", None, 0.1, 0).test.y.long()


def _test_x(run) -> torch.Tensor:
    """The test inputs as the run's model sees them (a Bernoulli model: the levels)."""
    return load_run(run)[1].fixed("test", seed=0).float()


def test_conditional_sliders_are_ordered_by_the_kl_from_its_prior(runs, pages):
    """Per coordinate, KL(q(z_j|x,y) || p(z_j|y)) averaged over the test set; for a diagonal
    posterior the coordinates' KLs sum to the model's own KL."""
    _, data = pages["cvae"]
    model = load(runs["cvae"])
    x = _test_x(runs["cvae"])
    with torch.no_grad():
        moments = model.latent_moments(x, y=_test_labels())
    assert data["stat_kind"] == "kl" and data["input_dim"] == 2 + 10
    assert math.isclose(sum(data["stat"]), float(moments.kl.mean()), rel_tol=1e-5)
    assert data["order"] == sorted(range(2), key=lambda j: -data["stat"][j])
    np.testing.assert_allclose(data["arrays"]["mu"], moments.mean.numpy(), atol=1e-6)


@needs_chromium
def test_conditional_page_has_a_label_selector(browser, runs, pages):
    path, data = pages["cvae"]
    model = load(runs["cvae"])
    labels = _test_labels()
    _open(browser, path)

    def decode(label):
        return lambda z: model.decode_mean(z, y=torch.tensor([label]))

    note = browser.evaluate("document.getElementById('sliders-note').textContent")
    assert "from the learned prior p(z_j|y)" in note  # this model's prior is conditional
    # Example 0 with its own label.
    options = browser.evaluate(
        "Array.from(document.querySelectorAll('#label option'), o => o.value)"
    )
    assert options == [str(c) for c in range(10)]
    own = int(labels[0])
    assert browser.evaluate("window.vaekitExplorer.state.label") == own
    assert browser.evaluate("document.getElementById('label').value") == str(own)
    z = _page_z(browser)
    _assert_canvas_is_decode(browser, model, z, decode(own))
    # Another label: the same z, decoded with it.
    other = (own + 3) % 10
    before = _canvas(browser)
    _change(browser, "label", other)
    torch.testing.assert_close(_page_z(browser), z)
    _assert_canvas_is_decode(browser, model, z, decode(other))
    assert np.abs(_canvas(browser).astype(int) - before.astype(int)).max() > 0
    # Random z and label: the page's numbers are torch's.
    generator = torch.Generator().manual_seed(2)
    for label in (1, 7):
        z = 1.5 * torch.randn(2, generator=generator, dtype=torch.float64)
        _change(browser, "label", label)
        browser.evaluate(f"window.vaekitExplorer.setZ({z.tolist()}, 'test')")
        _assert_canvas_is_decode(browser, model, z, decode(label))
        got = torch.tensor(
            browser.evaluate(f"Array.from(window.vaekitExplorer.decode({z.tolist()}))")
        )
        with torch.no_grad():
            want = decode(label)(z.float()[None]).flatten()
        torch.testing.assert_close(got.float(), want, atol=2e-5, rtol=1e-4)
    # A click on a test example: the mean of q(z|x,y) at its own label, decoded with it.
    picked = _click_example(browser, data, 5)
    own = int(labels[picked])
    assert browser.evaluate("window.vaekitExplorer.state.label") == own
    assert browser.evaluate("document.getElementById('label').value") == str(own)
    mu = torch.from_numpy(data["arrays"]["mu"][picked]).double()
    torch.testing.assert_close(_page_z(browser), mu, atol=1e-6, rtol=0)
    _assert_canvas_is_decode(browser, model, mu, decode(own))
    assert "label " + str(own) in browser.evaluate(
        "document.getElementById('input-caption').textContent"
    )


def _mean_path(model, layer: int):
    """Layer ``layer``'s decoder written from the model's own modules: z_{l-1} = the mean of
    p(z_{l-1}|z_l) down to z_1, then E[x|z_1]."""

    def decode(z: torch.Tensor) -> torch.Tensor:
        for i in range(layer - 1, -1, -1):
            z = model.down[i](z).loc
        return model.decode_mean(z)

    return decode


@needs_chromium
def test_hierarchical_page_has_a_layer_choice(browser, runs, pages):
    path, data = pages["hvae"]
    model = load(runs["hvae"])
    dims = [4, 3, 2]
    x = _test_x(runs["hvae"])
    _open(browser, path)
    layers = browser.evaluate(
        "Array.from(document.querySelectorAll('#layer option'), o => o.value)"
    )
    assert layers == ["0", "1", "2"]
    assert browser.evaluate("document.getElementById('layer').value") == "2"  # the top layer
    note = browser.evaluate("document.getElementById('controls').textContent")
    assert "generative path" in note and "mean" in note
    generator = torch.Generator().manual_seed(3)
    for layer in (2, 0, 1):
        _change(browser, "layer", layer)
        assert browser.evaluate("document.querySelectorAll('#sliders input').length") == dims[layer]
        # The layer's posterior mean for the current example (test example 0).
        mu = torch.from_numpy(data["arrays"]["spaces"][layer]["mu"][0]).double()
        torch.testing.assert_close(_page_z(browser), mu, atol=1e-6, rtol=0)
        _assert_canvas_is_decode(browser, model, mu, _mean_path(model, layer))
        for _ in range(2):
            z = 1.5 * torch.randn(dims[layer], generator=generator, dtype=torch.float64)
            browser.evaluate(f"window.vaekitExplorer.setZ({z.tolist()}, 'test')")
            _assert_canvas_is_decode(browser, model, z, _mean_path(model, layer))
            got = browser.evaluate(f"Array.from(window.vaekitExplorer.decode({z.tolist()}))")
            with torch.no_grad():
                want = _mean_path(model, layer)(z.float()[None]).flatten()
            torch.testing.assert_close(torch.tensor(got).float(), want, atol=2e-5, rtol=1e-4)
        # Moving a slider moves that coordinate of this layer only.
        j = browser.evaluate("Number(document.querySelector('#sliders input').dataset.dim)")
        before = _page_z(browser)
        browser.evaluate(
            f"(() => {{ const s = document.getElementById('z{j}'); s.value = 900;"
            "s.dispatchEvent(new Event('input')); })()"
        )
        after = _page_z(browser)
        moved = (after - before).abs()
        assert moved[j] > 0 and moved.sum() == moved[j]
        _assert_canvas_is_decode(browser, model, after, _mean_path(model, layer))
    # The map shows E_q[z_l|x], from the model's latent_moments (a fixed-seed estimate).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with torch.no_grad():
            mean = model.latent_moments(x).mean
    np.testing.assert_allclose(data["arrays"]["spaces"][1]["mu"], mean[:, 4:7].numpy(), atol=1e-5)
    assert data["stat_kind"] == "activity"
    np.testing.assert_allclose(data["stat"], mean[:, 7:].var(0, unbiased=False).numpy(), rtol=1e-4)


@needs_chromium
def test_vq_page_has_a_grid_of_codes(browser, runs, pages):
    path, data = pages["vqvae"]
    model = load(runs["vqvae"])
    x = _test_x(runs["vqvae"])
    with torch.no_grad():
        codes = model.encode(x)  # [N, 3]
    _open(browser, path)

    def grid() -> list[int]:
        return browser.evaluate(
            "Array.from(document.querySelectorAll('#code-grid select'), s => Number(s.value))"
        )

    def assert_shows(chosen: list[int]) -> None:
        z = model.quantise(torch.tensor(chosen)).double()
        torch.testing.assert_close(_page_z(browser), z, atol=1e-7, rtol=0)
        _assert_canvas_is_decode(browser, model, z)

    options = browser.evaluate("document.querySelectorAll('#code0 option').length")
    assert (
        options == 6
        and browser.evaluate("document.querySelectorAll('#code-grid select').length") == 3
    )
    assert grid() == codes[0].tolist()  # starts at test example 0's codes
    assert_shows(codes[0].tolist())
    assert browser.evaluate("document.getElementById('interp-box').hidden") is True
    chosen = codes[0].tolist()
    for position, step in ((1, 1), (0, 4), (2, 5)):
        code = (chosen[position] + step) % 6  # another entry than the one shown
        before = _canvas(browser)
        _change(browser, f"code{position}", code)
        chosen[position] = code
        assert grid() == chosen
        assert_shows(chosen)
        assert np.abs(_canvas(browser).astype(int) - before.astype(int)).max() > 0
    picked = _click_example(browser, data, 9)
    assert grid() == codes[picked].tolist()
    assert_shows(codes[picked].tolist())
    assert browser.evaluate("document.getElementById('input-figure').hidden") is False


@pytest.mark.parametrize("name", ["cvae", "hvae", "vqvae", "deep-hvae"])
def test_cli_writes_a_page_for_every_registered_model(runs, tmp_path, name):
    """Every registered model has its page (the runs cover the registry)."""
    from vaekit.models import MODELS

    assert {load(run).config.kind for run in runs.values()} == set(MODELS)
    out = tmp_path / "page.html"
    assert main(["explore", str(runs[name]), "-o", str(out)]) == 0
    text = out.read_text()
    assert "vaekitExplorer" in text and f'"kind":"{name}"' in text


def _page_program(data, space: int):
    """The embedded program of space ``space`` and its tensors, shaped from the page's
    flat weights blob (linear layers: [out, in] and [out])."""
    weights = torch.from_numpy(data["arrays"]["weights"])
    flat = [weights[offset : offset + size] for offset, size in data["decoder"]["tensors"]]
    tensors = list(flat)

    def shape(layers):
        for layer in layers:
            if layer["type"] == "linear":
                tensors[layer["w"]] = flat[layer["w"]].reshape(layer["out"], layer["in"])
            elif layer["type"] in ("residual", "inject"):
                shape(layer["body"])

    layers = data["spaces"][space]["layers"]
    shape(layers)
    return layers, tensors


def test_the_deep_hierarchical_page_decodes_by_group(runs, pages):
    """One space per latent group, the top one first; each group's program, as embedded in
    the page, is the model's top-down decode with the other groups at their prior means."""
    path, data = pages["deep-hvae"]
    model = load(runs["deep-hvae"]).float().eval()
    assert data["capabilities"]["latent_layers"] == ["z1", "z2", "z3"]
    assert [sp["name"] for sp in data["spaces"]] == ["z1", "z2", "z3"]
    assert [sp["latent_dim"] for sp in data["spaces"]] == [3, 2, 2]
    assert data["default_space"] == 2 and data["stat_kind"] == "activity"
    assert any(layer["type"] == "residual" for layer in data["spaces"][2]["layers"])
    assert '"type":"gate"' in path.read_text()
    generator = torch.Generator().manual_seed(6)
    for group, m in enumerate((3, 2, 2)):
        layers, tensors = _page_program(data, group)
        z = 1.5 * torch.randn(5, m, generator=generator)
        got = run_program(layers, tensors, data["decoder"]["mean"], z)
        with torch.no_grad():
            want = model.decode_mean(prior_mean_path(model, group, z)).flatten(1)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    x = _test_x(runs["deep-hvae"])  # the map: E_q[z_l|x] from latent_moments at seed 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with torch.no_grad():
            mean = model.latent_moments(x).mean
    np.testing.assert_allclose(data["arrays"]["spaces"][2]["mu"], mean[:, 5:].numpy(), atol=1e-5)


@needs_chromium
def test_the_deep_hierarchical_page_runs_in_the_browser(browser, runs, pages):
    path, _ = pages["deep-hvae"]
    model = load(runs["deep-hvae"]).float().eval()
    _open(browser, path)
    assert browser.evaluate("document.getElementById('layer').value") == "2"
    generator = torch.Generator().manual_seed(7)
    for group, m in ((2, 2), (0, 3)):
        _change(browser, "layer", group)

        def decode(z, group=group):
            return model.decode_mean(prior_mean_path(model, group, z))

        z = 1.5 * torch.randn(m, generator=generator, dtype=torch.float64)
        browser.evaluate(f"window.vaekitExplorer.setZ({z.tolist()}, 'test')")
        _assert_canvas_is_decode(browser, model, z, decode)
        got = browser.evaluate(f"Array.from(window.vaekitExplorer.decode({z.tolist()}))")
        with torch.no_grad():
            want = decode(z.float()[None]).flatten()
        torch.testing.assert_close(torch.tensor(got).float(), want, atol=2e-5, rtol=1e-4)


@needs_chromium
@pytest.mark.parametrize("rank", [None, 1, "ordinal"])
def test_mixed_table_row_is_shown_in_its_types(browser, tmp_path, rank):
    """A mixed table with missing cells: the page decodes a row as ``vaekit decode`` does
    (each column's E[v|z]: a real or positive mean, a count's mean rounded, the most probable
    category by name, an ordinal's mean level), the joint low-rank head included, beside the
    input row's cells."""
    from test_tables import HEADER, TINY, mixed_rows, write_csv
    from vaekit.data.tables import encoded_cells
    from vaekit.impute import decoded_values

    table = write_csv(tmp_path / "people.csv", HEADER, mixed_rows())
    out = tmp_path / "run"
    extra = [] if rank is None else ["--likelihood", "gaussian-lowrank", "--rank", str(rank)]
    if rank == "ordinal":  # grade's few integers as ordered levels
        extra = ["--column-type", "grade=ordinal"]
    assert main(["train", "--data", str(table), "--out", str(out), *TINY, *extra]) == 0
    page, data = build_explorer(out)
    assert [h["name"] for h in data["display"]["heads"]] == HEADER
    (tmp_path / "explore.html").write_text(page, encoding="utf-8")
    _open(browser, tmp_path / "explore.html")
    rows = browser.evaluate(
        "Array.from(document.querySelectorAll('#row-table tr')).slice(1).map(r => "
        "[r.querySelector('th').textContent, r.querySelector('td').dataset.value, "
        "r.querySelector('td').textContent, r.querySelectorAll('td')[1].textContent])"
    )
    model = load(out)
    want = [v[0] for v in decoded_values(model, _page_z(browser)[None].float())]
    columns = model.likelihood.columns
    assert [r[0] for r in rows] == HEADER
    for (_, value, text, _), column, v in zip(rows, columns, want, strict=True):
        if column.categories:  # the category's own text, not an index
            assert value == column.categories[int(v)] and text.startswith(value + " (")
        else:
            assert float(value) == pytest.approx(v, rel=1e-4)
        if column.kind == "count":
            assert text == str(round(v))
    x0 = load_run(out)[1].fixed("test", seed=0)[:1].double().numpy()
    shown = [r[3] if r[3] != "missing" else "" for r in rows]
    assert shown == encoded_cells(x0, columns)[0]
