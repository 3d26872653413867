"""What ``train`` returns, and the errors it raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaekit.models import Model
from vaekit.training.interrupt import TrainingInterrupted

__all__ = ["TrainResult", "TrainingError", "TrainingInterrupted"]


class TrainingError(ValueError):
    """Training cannot go on (e.g. the NaN guard gave up); the message says why and what to do."""


@dataclass
class TrainResult:
    """What ``train`` returns: the model (eval mode), the per-epoch history, the per-interval
    step records, the run directory and why training stopped."""

    model: Model
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    stop_reason: str = "budget"  # or "time", "early-stop", "finished" (resumed, nothing left)
    wall_seconds: float = 0.0
    files: list[str] = field(default_factory=list)  # written in run_dir, relative paths
