"""The clocks of one training run: its wall time, its training seconds across resumes, the
wall-clock budget (``train.max_minutes``), time-based checkpoints and snapshots, and the
training time of each record's interval. Every clock reading of training goes through here."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from vaekit.config import TrainConfig
from vaekit.support.spelling import spell


def closing_seconds(tc: TrainConfig, writes_report: bool) -> float:
    """Seconds of train.max_minutes kept back for the end-of-training report (whose
    evaluation is cut to fit them): a tenth of the budget, at most a minute; none when no
    report will be written (``writes_report``: train.report, and a run directory on rank 0)."""
    if not (tc.report and writes_report) or tc.max_minutes is None:
        return 0.0
    return min(0.1 * tc.max_minutes * 60.0, 60.0)


@dataclass
class RunClock:
    """Wall time and training seconds of one run (``perf_counter`` seconds; ``monotonic`` for
    the time since the last checkpoint).

    ``origin`` is the ``perf_counter`` reading at which this run's training seconds were 0:
    set when the trainer starts, moved back by a resumed run's seconds (``resume_at``). The
    defaults read the clocks when the object is made (through the module's ``time``, which
    a test may replace)."""

    max_minutes: float | None  # train.max_minutes
    checkpoint_minutes: float  # train.checkpoint_minutes
    snapshot_minutes: float | None  # train.snapshot_minutes
    origin: float = field(default_factory=lambda: time.perf_counter())
    started_at: float = field(default_factory=lambda: time.time() - 1.0)  # mtimes round down
    wall_origin: float = field(default_factory=lambda: time.perf_counter())  # this process's start
    closing_seconds: float = 0.0  # kept back for the report: :func:`closing_seconds`
    last_checkpoint: float = field(default_factory=lambda: time.monotonic())
    next_snapshot: float | None = None  # training seconds of the next snapshot
    # The current record interval and epoch: when they started, training seconds of the
    # interval spent in past epochs, and the step the epoch started at.
    interval_start: float = 0.0
    epoch_start: float = 0.0
    interval_seconds: float = 0.0
    epoch_start_step: int = 0
    process_epochs: int = 0  # epochs this process has ended
    warned_schedule: bool = False  # the cosine schedule outlasting the budget was said

    @classmethod
    def for_config(cls, tc: TrainConfig) -> RunClock:
        return cls(tc.max_minutes, tc.checkpoint_minutes, tc.snapshot_minutes)

    def resume_at(self, train_seconds: float) -> None:
        """Count this run's training seconds from ``train_seconds`` (a resumed run's)."""
        self.origin -= train_seconds

    def wall_seconds(self) -> float:
        """Seconds since this process's trainer started (set-up included)."""
        return time.perf_counter() - self.wall_origin

    def train_seconds(self) -> float:
        """Seconds of training in this run so far, across resumes (validation included)."""
        return time.perf_counter() - self.origin

    def out_of_time(self, seconds: float, epoch_end_seconds: float) -> bool:
        """Whether a run that has trained ``seconds`` must stop for train.max_minutes: when
        what is left would not hold another end of epoch as long as the last one
        (``epoch_end_seconds``) and the report's share. Stopping only once the budget is spent
        would end every timed run one validation pass late."""
        if self.max_minutes is None:
            return False
        return self.max_minutes * 60.0 - seconds <= epoch_end_seconds + self.closing_seconds

    def seconds_left(self) -> float | None:
        """Seconds of train.max_minutes left (None without a wall-clock budget)."""
        if self.max_minutes is None:
            return None
        return self.max_minutes * 60.0 - self.train_seconds()

    def flags(self, is_main: bool, epoch_end_seconds: float) -> list[bool]:
        """Rank 0's clocks after a step: ``[a time-based checkpoint is due, the wall-clock
        budget (train.max_minutes, validation included) is spent]``. The other ranks say
        False; the step's all-reduce tells them."""
        if not is_main:
            return [False, False]
        out = self.out_of_time(self.train_seconds(), epoch_end_seconds)
        return [self.checkpoint_due(), out]

    def checkpoint_due(self) -> bool:
        """Whether train.checkpoint_minutes have passed since the last checkpoint."""
        return time.monotonic() - self.last_checkpoint >= self.checkpoint_minutes * 60.0

    def checkpointed(self) -> None:
        self.last_checkpoint = time.monotonic()

    def snapshot_due(self, resumed_seconds: float) -> float | None:
        """The training seconds now if a snapshot is due (every train.snapshot_minutes of
        training, from the first mark after ``resumed_seconds``, where this process took the
        run up), else None."""
        if self.snapshot_minutes is None:
            return None
        interval, elapsed = self.snapshot_minutes * 60.0, self.train_seconds()
        if self.next_snapshot is None:
            self.next_snapshot = (math.floor(resumed_seconds / interval) + 1) * interval
        if elapsed < self.next_snapshot:
            return None
        self.next_snapshot = (math.floor(elapsed / interval) + 1) * interval
        return elapsed

    def start_epoch(self, step: int) -> None:
        self.interval_start = self.epoch_start = time.perf_counter()
        self.epoch_start_step = step

    def interval_done(self) -> float:
        """Training seconds of the record interval that ends now; the next one starts."""
        now = time.perf_counter()
        seconds = self.interval_seconds + now - self.interval_start
        self.interval_start, self.interval_seconds = now, 0.0
        return seconds

    def end_epoch(self) -> tuple[float, float]:
        """``(training seconds of the epoch, the moment its end started)``; the record
        interval's clock stops here too (validation is not training time)."""
        now = time.perf_counter()
        self.interval_seconds += now - self.interval_start
        self.process_epochs += 1
        return now - self.epoch_start, now

    def since(self, moment: float) -> float:
        return time.perf_counter() - moment

    def schedule_warning(self, step: int, budget: int, epoch_seconds: float) -> str | None:
        """Once: a warning when train.max_minutes will stop the run before a schedule laid
        out over the ``budget`` steps ends (the model would be the one mid-schedule, at a
        learning rate well above its floor). Projected from the epoch just ended
        (``epoch_seconds``, validation and checkpoints included), from the second epoch of
        this process on, so that start-up and compilation do not count as the pace."""
        limit = self.max_minutes
        if limit is None or self.warned_schedule or self.process_epochs < 2 or step >= budget:
            return None
        steps_per_second = (step - self.epoch_start_step) / max(epoch_seconds, 1e-9)
        needed = self.train_seconds() + (budget - step) / steps_per_second
        if needed <= limit * 60.0:
            return None
        self.warned_schedule = True
        fits = step + int((limit * 60.0 - self.train_seconds()) * steps_per_second)
        return (
            f"warning: at {steps_per_second * 60:,.0f} steps a minute (validation included), "
            f"the step budget of {budget:,} needs about {needed / 60:.0f} minutes; "
            f"{spell('--max-minutes', 'train.max_minutes')} {limit:g} stops the run near step "
            f"{max(fits, step):,}, before the cosine schedule ends: size "
            f"{spell('--max-steps', 'train.max_steps')} to the time for a schedule that ends"
        )
