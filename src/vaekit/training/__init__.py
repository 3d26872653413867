"""Training: ``train(config, out) -> TrainResult``. The CLI only parses and calls it.

One epoch is one pass over a fresh permutation of the training split (a memory-mapped split
is streamed from disk, shuffled shard-wise: ``MemmapSplit.stored_batches``), drawn from a data
generator seeded with ``train.seed`` (which also drives stochastic transforms such as dynamic
binarisation). A step is one optimiser update on one global batch. Every ``train.log_every``
steps a ``"kind": "step"`` record, and after every epoch a ``"kind": "epoch"`` record (with
the validation ELBO) goes to ``metrics.jsonl``; all likelihood numbers are nats per example.

Checkpoints (``checkpoints/last`` every ``train.checkpoint_every`` steps, every
``train.checkpoint_minutes`` and every epoch, ``checkpoints/best`` by validation ELBO) hold
the model, the optimiser, the schedule, the GradScaler, every RNG state and the data order,
so ``train(resume=RUN)`` continues exactly where the run stopped: on CPU with a fixed seed,
bitwise. Under ``torchrun`` each rank trains on its shard of every global batch (see
``vaekit.training.distributed``) and only rank 0 writes.

The modules: ``api`` (``train``), ``loop`` (``Trainer``: the run loop and the step, holding
the components below), ``state`` (``LoopState``, the step budget, the data order), ``clock``
(training seconds, the time budget), ``checkpoints`` (checkpoints, snapshots, resuming),
``records`` (metrics.jsonl, console, progress bar), ``final`` (the kept weights, the final
outputs, the summary), ``step`` (the objective module, optimiser, gradient norm,
all-reduce), ``validation``, ``data_setup`` (the data and the model-config fields it
fills), ``device``, ``run_dir`` and ``result`` (``TrainResult``, the errors).
"""

from vaekit.support.device import resolve_device
from vaekit.training.api import train
from vaekit.training.data_setup import resolve_model_config
from vaekit.training.loop import Trainer
from vaekit.training.result import TrainingError, TrainingInterrupted, TrainResult
from vaekit.training.run_dir import prepare_run_dir
from vaekit.training.state import LoopState, run_config
from vaekit.training.step import ObjectiveModule, make_optimizer
from vaekit.training.validation import validation_metrics

__all__ = [
    "LoopState",
    "ObjectiveModule",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "make_optimizer",
    "prepare_run_dir",
    "resolve_device",
    "resolve_model_config",
    "run_config",
    "train",
    "validation_metrics",
]
