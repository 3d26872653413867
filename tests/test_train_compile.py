"""train.compile = "auto": short runs stay eager without compiling, a measured speed-up keeps
the compiled step, a failed compile falls back to eager steps with the same weights, and a
resumed run keeps the decision. torch.compile and the step clock are faked: no test here
compiles for real."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from helpers import tiny
from vaekit.training import compiling, train
from vaekit.training.distributed import DistContext

torch.set_num_threads(1)


class FakeCompiled(nn.Module):
    """What the fake ``torch.compile`` returns: the eager module, each call moving the fake
    clock by ``cost`` seconds (``first`` more on the first call: the compile)."""

    def __init__(self, module: nn.Module, clock: dict, cost: float, first: float, fail: bool):
        super().__init__()
        self.inner, self.clock, self.cost, self.first, self.fail = module, clock, cost, first, fail
        self.calls = 0

    def forward(self, x, y=None):
        if self.fail == "partial" and x.shape[0] != 32:
            raise RuntimeError("the new shape did not compile")
        if self.fail is True:  # after a random draw, which the fallback must put back
            torch.rand(3)
            raise RuntimeError("no C++ compiler found\ndetails")
        first = self.first if self.calls == 0 else self.clock["second"] if self.calls == 1 else 0.0
        self.clock["now"] += self.cost + first
        self.calls += 1
        return self.inner(x, y)


@pytest.fixture
def fake(monkeypatch):
    """A step clock that counts 5 s per eager step, a fake torch.compile (``made`` lists what
    it made) and small timing windows: 1 warm-up step and 2 timed steps per mode."""
    state = {"now": 0.0, "cost": -2.0, "first": 32.0, "second": 0.0, "fail": False, "made": []}

    def clock() -> float:
        state["now"] += 5.0  # start and end of a step: 5 s between them
        return state["now"]

    def fake_compile(module):
        made = FakeCompiled(module, state, state["cost"], state["first"], state["fail"])
        state["made"].append(made)
        return made

    monkeypatch.setattr(compiling.StepCompiler, "clock", staticmethod(clock))
    monkeypatch.setattr(torch, "compile", fake_compile)
    for name, value in (("MIN_STEPS", 5), ("WARM_STEPS", 1), ("TIMED_STEPS", 2)):
        monkeypatch.setattr(compiling, name, value)
    return state


def compile_records(run) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "compile"]


def saved_decision(run) -> str | None:
    return json.loads((run / "checkpoints/last/trainer.json").read_text())["loop"]["compile"]


def test_a_short_run_never_compiles(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr(torch, "compile", lambda module: made.append(module) or module)
    lines: list[str] = []
    train(tiny(), out=tmp_path / "run", log=lines.append)  # 2 epochs of 11 steps
    line = "eager: run too short (21 steps left; auto measures runs of 500 steps or more)"
    assert made == [] and line in lines
    assert compile_records(tmp_path / "run") == [
        {"kind": "compile", "step": 1, "compiled": False, "reason": line}
    ]
    assert saved_decision(tmp_path / "run") == line


def test_auto_stays_eager_where_weights_must_not_depend_on_timings():
    cpu, one, two = torch.device("cpu"), DistContext(), DistContext(rank=1, world_size=2)
    assert compiling.eager_reason(tiny().train, one, cpu) is None
    assert compiling.eager_reason(tiny("train.deterministic=true").train, one, cpu) == (
        "train.deterministic (the weights must not depend on a timing)"
    )
    assert compiling.eager_reason(tiny().train, two, cpu).startswith("under torchrun")
    assert compiling.eager_reason(tiny().train, one, torch.device("mps")) == (
        "auto compiles on cpu and cuda only, not mps"
    )


def test_a_measured_speed_up_keeps_the_compiled_step_and_resume_keeps_it(tmp_path, fake):
    run = tmp_path / "run"
    lines: list[str] = []
    config = tiny("train.batch_size=32", "train.epochs=2")  # 43 steps an epoch
    train(config, out=run, log=lines.append)
    # Steps 1-3 eager (5 s), step 4 compiles (30 s more), steps 5-7 compiled (3 s).
    line = (
        "compiled: yes (measured 1.67x: 5000.00 against 3000.00 ms per step; compiling took "
        "30 s, paid back in 15 steps; 79 steps left)"
    )
    assert [x for x in lines if x.startswith("compiled")] == [line]
    assert len(fake["made"]) == 1 and fake["made"][0].calls == 83
    assert compile_records(run) == [
        {"kind": "compile", "step": 7, "compiled": True, "reason": line}
    ]
    assert saved_decision(run) == line
    lines.clear()
    train(tiny("train.batch_size=32", "train.epochs=3"), resume=run, log=lines.append)
    # Compiled from the first resumed step on, without timing again or a second record.
    assert len(fake["made"]) == 2 and fake["made"][1].calls == 43
    assert not any(x.startswith(("compiled:", "eager:")) for x in lines)
    assert compile_records(run) == [
        {"kind": "compile", "step": 7, "compiled": True, "reason": line}
    ]
    assert saved_decision(run) == line


def test_a_compiled_step_that_is_not_faster_goes_back_to_eager(tmp_path, fake):
    fake["cost"] = 0.0
    lines: list[str] = []
    train(tiny("train.batch_size=32", "train.epochs=2"), log=lines.append)
    line = (
        "eager: compiled step not faster (measured 1.00x: 5000.00 against 5000.00 ms per step; "
        "compiling took 32 s)"
    )
    assert line in lines and fake["made"][0].calls == 4  # the compile and 3 timed steps


def test_a_failed_compile_falls_back_to_the_same_eager_steps(tmp_path, fake):
    fake["fail"] = True
    lines: list[str] = []
    config = tiny("train.batch_size=32", "train.epochs=2")
    failed = train(config, log=lines.append).model
    assert "eager: torch.compile failed (RuntimeError: no C++ compiler found)" in lines
    assert not any("Traceback" in x for x in lines)
    eager = train(tiny("train.batch_size=32", "train.epochs=2", "train.compile=false")).model
    for a, b in zip(failed.state_dict().values(), eager.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_run_too_short_for_its_measured_step_time_stays_eager(tmp_path, fake):
    # 5 s per eager step: the 38 steps left after the timing are 190 s, under 80 s / 0.2 (two
    # compiles: 1347 examples make a last partial batch of 3).
    lines: list[str] = []
    train(tiny("train.batch_size=32", "train.epochs=1", "train.max_steps=41"), log=lines.append)
    line = (
        "eager: run too short (about 190 s of steps left at 5000.00 ms per step; compiling "
        "takes about 80 s and has saved at most 20% of a step)"
    )
    assert line in lines and fake["made"] == []


def test_a_later_compiled_step_that_fails_falls_back_for_the_rest_of_the_run(tmp_path, fake):
    fake["fail"] = "partial"  # the last batch of an epoch, 3 rows, does not compile
    run, lines = tmp_path / "run", []
    train(tiny("train.batch_size=32", "train.epochs=2"), out=run, log=lines.append)
    line = "eager: torch.compile failed (RuntimeError: the new shape did not compile)"
    decisions = [x for x in lines if x.startswith(("compiled:", "eager:"))]
    assert decisions[0].startswith("compiled: yes") and decisions[1:] == [line]
    assert fake["made"][0].calls == 39  # steps 4 to 42; step 43 and the second epoch eager
    assert [r["compiled"] for r in compile_records(run)] == [True, False]
    assert saved_decision(run) == line


def test_a_run_with_a_kl_warm_up_measures_from_its_first_steps(tmp_path, fake):
    # The warm-up's weight changes every step; torch compiles once more for it (the second
    # compiled step: 10 s more, 8 s over an eager step), not per step, so the decision comes
    # at the same step as without a warm-up, long before its end, and counts both compiles.
    fake["second"] = 10.0
    run, lines = tmp_path / "run", []
    config = tiny("train.batch_size=32", "train.epochs=2", "objective.kl_warmup_steps=60")
    train(config, out=run, log=lines.append)
    line = (
        "compiled: yes (measured 1.67x: 5000.00 against 3000.00 ms per step; compiling took "
        "38 s, paid back in 19 steps; 79 steps left)"
    )
    assert compile_records(run) == [
        {"kind": "compile", "step": 7, "compiled": True, "reason": line}
    ]
