"""The per-model table's FLOP counter: the GEMMs of one training step, counted by hooks on
every Linear call, equal a count by hand; and the table has a row for every registered model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vaekit.config import apply_overrides, load_config
from vaekit.config_sections import ObjectiveConfig
from vaekit.models import DeepHierarchicalVAE, DeepHVAEConfig
from vaekit.models.registry import model_names

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    path = REPO / "benchmarks" / "bench_models.py"
    spec = importlib.util.spec_from_file_location("bench_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_deep_model() -> DeepHierarchicalVAE:
    """16 inputs, width 5, groups z_1 (2) and z_2 (3), one residual cell per group and pass."""
    config = DeepHVAEConfig(
        latent_dims=[2, 3], width=5, cells=1, data_shape=[16], likelihood="bernoulli"
    )
    return DeepHierarchicalVAE(config)


def by_hand(batch: int, draws: int) -> list[tuple[int, int, int]]:
    """(rows, inputs, outputs) of a step of ``tiny_deep_model``, in call order: the bottom-up
    pass on the batch, the top-down path and the output layer on ``draws`` x the batch."""
    b, k = batch, draws * batch
    cell = [(5, 5), (5, 5)]  # inner, outer (residual: outer is W -> W)
    up = [(b, 16, 5)] + [(b, *s) for s in cell + cell]  # stem, then a cell per group
    top = [(k, 10, 5), (k, 5, 6), (k, 3, 5)] + [(k, *s) for s in cell]  # q(z_2|x), project
    bottom = [(k, 5, 5), (k, 5, 4)]  # p(z_1|z_2)
    bottom += [(k, 10, 5), (k, 5, 4), (k, 2, 5)] + [(k, *s) for s in cell]  # q(z_1|z_2, x)
    return up + top + bottom + [(k, 5, 16)]


def test_the_gemms_of_a_deep_models_step_are_the_hand_count(bench):
    model = tiny_deep_model()
    elbo = bench.step_linear_shapes(model, ObjectiveConfig(name="elbo"), 7)
    assert elbo == by_hand(7, 1)
    # 7 x (16*5 + 4*25) + 7 x (10*5 + 5*6 + 3*5 + 2*25 + 25 + 5*4 + 10*5 + 5*4 + 2*5 + 2*25
    # + 5*16) = 1,260 + 2,800 = 4,060 multiply-adds, three GEMMs of 2 FLOPs each per call
    assert bench.gemm_flops(elbo) == 6 * 4060
    # The IWAE bound runs the top-down path once per draw, the bottom-up pass once.
    iwae = bench.step_linear_shapes(
        model, ObjectiveConfig(name="iwae", num_importance_samples=3), 7
    )
    assert iwae == by_hand(7, 3)
    assert bench.gemm_flops(iwae) == 6 * (1260 + 3 * 2800)


def test_the_table_has_a_row_for_every_registered_model(bench):
    kinds = {
        apply_overrides(load_config(REPO / "configs" / preset), overrides).model.kind
        for preset, _, overrides, _ in bench.ROWS.values()
    }
    assert kinds == set(model_names())


def test_the_table_has_a_row_for_the_dense_deep_model(bench):
    preset, data, overrides, _ = bench.ROWS["deep"]
    model = load_config(REPO / "configs" / preset).model
    assert (data, overrides) == ("mnist", [])
    assert (model.kind, model.network) == ("deep-hvae", "mlp")
