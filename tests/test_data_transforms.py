"""Binarisation and dequantisation: the statistics they promise, checked with tolerances
derived from the sample size."""

import math

import numpy as np
import torch

from vaekit.data import Dataset, Split
from vaekit.data.builtin import STATIC_BINARIZATION_SEED, VARIANTS, build_image_dataset
from vaekit.data.transforms import Dequantize, DynamicBinarize

LEVELS = torch.tensor([0, 1, 51, 128, 200, 254, 255], dtype=torch.uint8)


def test_dynamic_binarisation_mean_is_the_pixel_intensity():
    m = 40000
    x = LEVELS.repeat(m, 1)  # [m, 7]: m independent draws of each level
    draws = DynamicBinarize(256)(x, torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    p = LEVELS.double() / 255
    mean = draws.double().mean(0)
    # 5 standard errors of a Bernoulli mean over m draws: fails by chance with prob < 1e-5.
    tolerance = 5 * torch.sqrt(p * (1 - p) / m) + 1e-12
    assert bool(((mean - p).abs() <= tolerance).all()), (mean, p)
    assert mean[0] == 0 and mean[-1] == 1  # v = 0 never fires, v = 255 always does


def tiny_image_dataset(transform):
    x = LEVELS.repeat(200, 1).reshape(200, 1, 1, 7)
    return Dataset(
        "tiny", (1, 1, 7), Split(x), Split(x[:0]), Split(x[:0]), transform, "binary", "bernoulli"
    )


def test_dynamic_binarisation_differs_between_epochs():
    data = tiny_image_dataset(DynamicBinarize(256))
    g = torch.Generator().manual_seed(0)
    epoch1 = torch.cat([x for x, _ in data.batches("train", 50, generator=g)])
    epoch2 = torch.cat([x for x, _ in data.batches("train", 50, generator=g)])
    assert not torch.equal(epoch1, epoch2)  # unshuffled: same images, fresh draws
    # reproducible from the seed
    g = torch.Generator().manual_seed(0)
    again = torch.cat([x for x, _ in data.batches("train", 50, generator=g)])
    assert torch.equal(epoch1, again)


def fake_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train_x": rng.integers(0, 256, (300, 4, 4), dtype=np.uint8),
        "train_y": rng.integers(0, 10, 300).astype(np.uint8),
        "test_x": rng.integers(0, 256, (50, 4, 4), dtype=np.uint8),
        "test_y": rng.integers(0, 10, 50).astype(np.uint8),
    }


def test_static_binarisation_is_reproducible_and_fixed():
    arrays = fake_arrays()
    variant = VARIANTS["binarized-static"]
    a = build_image_dataset("m-static", arrays, variant, 0.1, 0, "fake")
    b = build_image_dataset("m-static", arrays, variant, 0.2, 7, "fake")  # other val split
    assert a.info()["static_binarization_seed"] == STATIC_BINARIZATION_SEED
    assert a.support == "binary" and a.default_likelihood == "bernoulli"
    assert set(a.train.x.unique().tolist()) <= {0, 1}
    assert torch.equal(a.test.x, b.test.x)
    c1 = build_image_dataset("m-static", arrays, variant, 0.0, 0, "fake")
    c2 = build_image_dataset("m-static", arrays, variant, 0.0, 0, "fake")
    assert torch.equal(c1.train.x, c2.train.x)  # the documented seed: the same draw each load
    both = lambda d: torch.cat([d.train.x, d.val.x])  # noqa: E731
    order = lambda d: torch.cat([d.train.y, d.val.y])  # noqa: E731
    assert torch.equal(both(a).sum(), both(b).sum()) and len(order(a)) == 300
    # the same draw every epoch: the transform is deterministic
    g = torch.Generator().manual_seed(1)
    e1 = torch.cat([x for x, _ in a.batches("train", 64, generator=g)])
    e2 = torch.cat([x for x, _ in a.batches("train", 64, generator=g)])
    assert torch.equal(e1, e2) and torch.equal(e1, a.train.x.float())


def test_static_binarisation_mean_is_the_intensity():
    arrays = {k: v for k, v in fake_arrays(1).items()}
    arrays["train_x"] = np.tile(LEVELS.numpy(), (6000, 1)).reshape(6000, 1, 7)
    arrays["train_y"] = np.zeros(6000, np.uint8)
    data = build_image_dataset("s", arrays, VARIANTS["binarized-static"], 0.0, 0, "fake")
    mean = data.train.x.double().mean(0).flatten()
    p = LEVELS.double() / 255
    assert bool(((mean - p).abs() <= 5 * torch.sqrt(p * (1 - p) / 6000) + 1e-12).all())


def test_dequantised_values_stay_in_their_bins():
    v = torch.arange(256, dtype=torch.uint8).repeat(100)
    x = Dequantize(256)(v, torch.Generator().manual_seed(0)).double()
    assert bool((x >= v.double() / 256).all()) and bool((x < (v.double() + 1) / 256).all())
    assert torch.equal(torch.floor(x * 256).to(torch.uint8), v)
    # within its bin the noise is uniform: mean offset 1/2 per level (5 standard errors)
    u = x * 256 - v.double()
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / u.numel())


def test_plain_variant_is_dequantised_8bit():
    data = build_image_dataset("m", fake_arrays(), VARIANTS[""], 0.1, 0, "fake")
    assert isinstance(data.transform, Dequantize) and data.transform.levels == 256
    assert data.num_levels == 256 and data.support == "unit-interval"
    assert data.default_likelihood == "gaussian-learned"
    assert data.train.x.dtype == torch.uint8 and data.shape == (1, 4, 4)
    assert data.train.y.dtype == torch.int64  # labels kept
