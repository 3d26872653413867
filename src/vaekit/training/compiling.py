"""Whether the training step runs under ``torch.compile``: ``train.compile`` = true, false or
"auto" (the default), where the run measures it.

"auto" compiles only where compiling can pay back within the run, and falls back to eager
steps without a traceback where it does not or where compiling fails:

1. Runs of fewer than ``MIN_STEPS`` steps left stay eager from the start: they never pay the
   compile cost (the test suite, ``make demo``, small tables).
2. Otherwise the run times ``TIMED_STEPS`` eager steps (after ``WARM_STEPS``), and stays eager
   if the steps left, at that speed (and within train.max_minutes), add up to less than
   ``COMPILE_SECONDS / BEST_SAVING`` per batch shape (a last partial batch is a second shape,
   compiled again): even the best saving measured would not win the compile time back.
3. Otherwise it compiles (the first compiled step's extra time is the compile time), times
   ``TIMED_STEPS`` compiled steps and keeps them only if they are ``KEEP_SPEEDUP`` times
   faster than the eager ones (beyond the spread of timings on a loaded machine); the compile
   time is spent by then either way, so any real speed-up left is worth keeping.

The decision is a line in the log, a ``"kind": "compile"`` record in metrics.jsonl and the
run's state (``LoopState.compile``): a resumed run compiles or not as decided, without
measuring again. Compiled steps do not give bitwise the eager steps' numbers (fused kernels
sum in another order; compiled random draws come from their own generator), so "auto" stays
eager where the weights must not depend on timings: under train.deterministic and torchrun
(each rank would measure for itself). The KL warm-up's weight, a new float every step, does
not hold the measurement back: torch compiles the step once more for its second value (then
as a symbolic float, with no further recompiles; that step is one of the WARM_STEPS), so a
run with a warm-up measures from its first steps like any other.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from vaekit.config import TrainConfig
    from vaekit.training.distributed import DistContext

# The first compile of a training step, in a fresh process on the 2-core reference machine:
# about 30 s for the reference MLP VAE and 40 s for the VampPrior record model
# (benchmarks/notes/likelihood-record.md); 38 s for a tiny MLP VAE (hidden 32) on 1 thread
# of the same machine under load from other jobs (one probe, noisy). 40 s is the estimate.
COMPILE_SECONDS = 40.0
# The largest saving per step measured from compiling: 13 % on the VampPrior record model
# (3,701 against 3,269 images/s); nothing on the plain MLP VAE. Rounded up to 20 %, so runs
# whose eager steps add up to less than 40 / 0.2 = 200 s are never compiled.
BEST_SAVING = 0.2
MIN_STEPS = 500  # below this many steps left, no measurement: eager
WARM_STEPS = 3  # steps left out of each timing (allocator, caches, the compile itself)
TIMED_STEPS = 20  # steps timed in each mode (the median is taken)
KEEP_SPEEDUP = 1.03  # a compiled step must beat the eager one by more than the timing spread

Step = Callable[[nn.Module], Any]


class StepCompiler:
    """Which module the training step calls, eager ``module`` or its compiled form, as
    ``train.compile`` (``mode``) says. ``decision`` is the decision's line once taken (what
    ``LoopState.compile`` keeps), None while "auto" is still measuring; ``news()`` hands it
    out once, for the log and metrics.jsonl."""

    clock: Callable[[], float] = staticmethod(time.perf_counter)

    def __init__(
        self,
        mode: bool | str,
        module: nn.Module,
        why_not: str | None = None,
        decided: str | None = None,
        shapes: int = 1,
    ) -> None:
        """``why_not``: why this run must stay eager under "auto" (torchrun, deterministic),
        or None; ``decided``: the decision of the run being resumed (already in its log);
        ``shapes``: the batch shapes the step sees (2 with a last partial batch: the step is
        compiled once for each)."""
        self.eager, self.module = module, module
        self.auto = mode == "auto"  # compiled because measured: a failure falls back
        self.compile_estimate = COMPILE_SECONDS * shapes
        self.decision: str | None = None
        self.announced = False
        self.timings: list[float] = []  # seconds per step of the mode being timed
        self.eager_seconds: float | None = None  # median eager step once measured
        self.compile_seconds: float | None = None
        self.trying = False  # compiled under "auto", first step not yet through
        self.started: float | None = None  # the clock at the timed step's start
        if mode is True:  # asked for: a failure to compile is the user's to see
            self._compile()
            self.decision = "compiled: yes (train.compile = true)"
        elif mode is False:
            self.decision = "eager: train.compile = false"
        elif decided is not None:
            self.decision, self.announced = decided, True
            if decided.startswith("compiled"):
                self._compile()
                self.trying = True
        elif why_not is not None:
            self.decision = f"eager: {why_not}"

    @property
    def compiled(self) -> bool:
        return self.module is not self.eager

    def news(self) -> str | None:
        """The decision's line the first time it is asked for after it is taken, else None."""
        if self.decision is None or self.announced:
            return None
        self.announced = True
        return self.decision

    @property
    def measuring(self) -> bool:
        return self.decision is None

    def run(self, step: Step) -> Any:
        """``step(module)`` with the module to use now. Under "auto", a failure of a compiled
        step (no C++ compiler, an operator Inductor cannot handle, a new batch shape that does
        not compile) falls back to eager for the rest of the run and runs the step eagerly:
        with the gradients cleared and, on the first compiled step, the random state put back
        (later ones would need a copy of it on every step). An error of the step itself
        comes back from the eager retry."""
        if not (self.auto and self.compiled):
            return step(self.module)
        rng = torch.get_rng_state() if self.trying else None
        cuda = (
            torch.cuda.get_rng_state_all()
            if rng is not None and torch.cuda.is_initialized()
            else None
        )
        try:
            out = step(self.module)
        except Exception as exc:  # whatever the compiler raises: eager steps still work
            self.trying, self.module, self.announced = False, self.eager, False
            if rng is not None:
                torch.set_rng_state(rng)
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)
            for p in self.eager.parameters():
                p.grad = None
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.decision = f"eager: torch.compile failed ({type(exc).__name__}: {first[:120]})"
            return step(self.module)
        self.trying = False
        return out

    def start_step(self) -> None:
        """Before a step: start its clock while measuring."""
        if self.measuring:
            self.started = self.clock()

    def end_step(self, steps_left: int, seconds_left: float | None) -> None:
        """After a step whose clock ``start_step`` started: count its time; decide when a
        timing is complete. ``steps_left`` after it, ``seconds_left`` of train.max_minutes
        (None: no limit)."""
        if not self.measuring or self.started is None:
            return
        seconds, self.started = self.clock() - self.started, None
        if self.eager_seconds is None and not self.timings and steps_left < MIN_STEPS:
            self.decision = (
                f"eager: run too short ({steps_left:,} steps left; auto measures runs of "
                f"{MIN_STEPS:,} steps or more)"
            )
            return
        if self.eager_seconds is not None and self.compile_seconds is None:
            self.compile_seconds = max(seconds - self.eager_seconds, 0.0)  # the first compiled
            return
        self.timings.append(seconds)
        if len(self.timings) < WARM_STEPS + TIMED_STEPS:
            return
        median = statistics.median(self.timings[WARM_STEPS:])
        warm, self.timings = self.timings[:WARM_STEPS], []
        if self.eager_seconds is None:
            self._after_eager(median, steps_left, seconds_left)
        else:
            # A recompile among the warm steps (a KL warm-up's changing weight) is compile
            # time too.
            self.compile_seconds += sum(max(t - self.eager_seconds, 0.0) for t in warm)
            self._after_compiled(median, steps_left)

    def _after_eager(self, eager: float, steps_left: int, seconds_left: float | None) -> None:
        self.eager_seconds = eager
        ahead = (
            steps_left * eager if seconds_left is None else min(steps_left * eager, seconds_left)
        )
        if ahead * BEST_SAVING < self.compile_estimate:
            self.decision = (
                f"eager: run too short (about {ahead:,.0f} s of steps left at {eager * 1e3:.2f} "
                f"ms per step; compiling takes about {self.compile_estimate:.0f} s and has "
                f"saved at most {BEST_SAVING:.0%} of a step)"
            )
            return
        self._compile()
        self.trying = True

    def _after_compiled(self, compiled: float, steps_left: int) -> None:
        eager, spent = self.eager_seconds, self.compile_seconds
        speedup = eager / compiled
        measured = (
            f"measured {speedup:.2f}x: {eager * 1e3:.2f} against {compiled * 1e3:.2f} ms per "
            f"step; compiling took {spent:.0f} s"
        )
        if speedup < KEEP_SPEEDUP:
            self.module = self.eager
            self.decision = f"eager: compiled step not faster ({measured})"
            return
        payback = spent / (eager - compiled)
        self.decision = (
            f"compiled: yes ({measured}, paid back in {payback:,.0f} steps; "
            f"{steps_left:,} steps left)"
        )

    def _compile(self) -> None:
        self.module = torch.compile(self.eager)


def eager_reason(tc: TrainConfig, ctx: DistContext, device: torch.device) -> str | None:
    """Why train.compile = "auto" must leave this run eager without measuring, or None."""
    if ctx.enabled:
        return (
            "under torchrun auto stays eager (each rank would time its own steps); "
            "train.compile = true compiles every rank"
        )
    if tc.deterministic:
        return "train.deterministic (the weights must not depend on a timing)"
    if device.type not in ("cpu", "cuda"):
        return f"auto compiles on cpu and cuda only, not {device.type}"
    return None
