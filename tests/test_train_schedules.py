"""Learning-rate schedules and the KL warm-up: exact values at given steps."""

from __future__ import annotations

import itertools
import math

import pytest

from vaekit.config import ScheduleConfig
from vaekit.training.schedules import build_schedule, kl_weight


def test_constant():
    s = build_schedule(0.1, ScheduleConfig(), total_steps=10)
    assert [s.lr(k) for k in (0, 5, 9)] == [0.1, 0.1, 0.1]


def test_cosine_with_warmup_values():
    # W = 4 warm-up steps, T = 14 total: cosine over steps 4..13 with t = (k - 4) / 9.
    s = build_schedule(1.0, ScheduleConfig(name="cosine", warmup_steps=4, min_lr=0.1), 14)
    assert [s.lr(k) for k in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert s.lr(4) == pytest.approx(1.0)
    t = 3 / 9
    assert s.lr(7) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
    assert s.lr(13) == pytest.approx(0.1)  # the last step runs at min_lr
    assert s.lr(100) == pytest.approx(0.1)
    lrs = [s.lr(k) for k in range(4, 14)]
    assert all(a > b for a, b in itertools.pairwise(lrs))


def test_plateau_reduces_after_patience_and_restores_from_state():
    config = ScheduleConfig(name="plateau", factor=0.5, patience=1, min_lr=0.2)
    s = build_schedule(1.0, config, 100)
    for val_elbo, expected in [(-10, 1.0), (-9, 1.0), (-9.5, 1.0), (-9.5, 0.5), (-9.6, 0.5)]:
        s.epoch_end(val_elbo)
        assert s.lr(0) == expected
    for _ in range(2):
        s.epoch_end(-20.0)
    assert s.lr(0) == 0.25
    s.epoch_end(-20.0)
    s.epoch_end(-20.0)
    assert s.lr(0) == 0.2  # floored at min_lr
    copy = build_schedule(1.0, config, 100)
    copy.load_state_dict(s.state_dict())
    assert copy.state_dict() == s.state_dict() and copy.lr(0) == 0.2


def test_kl_warmup_values():
    assert [kl_weight(k, 2.0, 4) for k in (0, 1, 2, 4, 10)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    assert kl_weight(0, 0.7, 0) == 0.7  # no warm-up
