"""What a run tells and writes besides checkpoints: ``metrics.jsonl`` records, console lines
and the progress bar, TensorBoard, and the final model, pictures and report.

Records (all likelihood figures in nats per example; ``elbo``, ``log_px_z``, ``iwae`` and a
likelihood bound's ``loss`` of the data as given, as ``vaekit evaluate`` reports them):
``"kind": "step"`` every ``train.log_every`` steps (means over the interval), ``"kind":
"epoch"`` after every epoch (``train_*`` means over the epoch, ``val_*`` over the validation
split) and ``"kind": "skip"`` for a step the NaN guard refused; ``examples_per_s`` counts
training time only.
"""

from __future__ import annotations

import json
import time
from typing import Any

from vaekit import checkpoint, rundir
from vaekit.config import to_dict
from vaekit.data.table_schema import schema_lines
from vaekit.objectives import IWAEObjective, NegativeELBO
from vaekit.support.progress import progress_bar
from vaekit.support.provenance import training_metadata
from vaekit.support.spelling import spell
from vaekit.training.console import (
    LEGEND,
    format_record,
    still_improving,
    summary,
    written_since,
)
from vaekit.training.result import TrainResult


def means(acc: dict[str, float]) -> dict[str, float]:
    """Per-example means of summed metrics; grad_norm is a mean over the steps that measured
    it (the logging steps, or every step when clipping)."""
    n, steps = acc.get("examples", 0.0), acc.get("grad_norm_steps", 0.0)
    skip = ("examples", "grad_norm_steps", "grad_norm")
    out = {k: v / n for k, v in acc.items() if k not in skip and n}
    if steps:
        out["grad_norm"] = acc["grad_norm"] / steps
    return out


# Log-likelihood figures (nats per example) that change with the space of the data: the
# transform's change of variables c moves each by -c. KL and the objective's loss do not.
DENSITY_METRICS = ("elbo", "log_px_z", "iwae")


class Records:
    """The Trainer's output methods (a mixin of ``training.loop.Trainer``): they read its
    ``state``, ``history``, ``steps``, ``run_dir``, ``writes``, ``bar`` and ``tensorboard``."""

    def _data_scale(self) -> float:
        """c of the transform (nats per example): figures of the data as given are the
        model-space ones minus c. 0 for a model without a likelihood, as evaluate does."""
        if not self.model.has_likelihood:
            return 0.0
        return self.dataset.transform.log_data_scale(tuple(self.dataset.shape))

    def _in_data_space(self, values: dict[str, float]) -> dict[str, float]:
        """``values`` with the log-likelihood figures of the data as given, the space
        ``vaekit evaluate`` and the report use, and the loss of a likelihood bound (the
        negative ELBO or IWAE bound, free bits and KL weight included) with them, so that
        loss = -elbo still holds for the plain ELBO; the rest as they are."""
        c = self._data_scale()
        shifted = {k: -c for k in DENSITY_METRICS}
        if isinstance(self.objective, NegativeELBO | IWAEObjective):
            shifted["loss"] = c
        return {k: v + shifted.get(k, 0.0) for k, v in values.items()}

    def _say(self, line: str) -> None:
        """A console line, above the progress bar if there is one."""
        (self.bar.write if self.bar is not None else self.log)(line)

    def _announce(self) -> None:
        """The lines before the first step (the schema of a mixed-type table, the budget, the
        space of the figures, their legend), printed before the progress bar opens."""
        transform, c = self.dataset.transform, self._data_scale()
        if self.config.model.columns:  # a mixed-type table: the schema the run models
            self._say("columns (saved in config.json as model.columns):")
            for line in schema_lines(self.config.model.columns):
                self._say(line)
        if c != 0.0:  # name the space of the figures below: the one evaluate reports
            self._say(
                f"elbo, log_px_z and loss below are of {transform.data_space()}, as `vaekit "
                f"evaluate` reports them: of the model's inputs ({transform.space}) the ELBO "
                f"is {c:.3f} nats per example higher and the loss as much lower"
            )
        if hasattr(self, "default_epochs"):  # the default budget, sized to the data
            tc, per_epoch = self.config.train, self.batches_per_epoch
            set_it = spell("--epochs or --max-steps", "train.epochs or train.max_steps")
            self._say(
                f"budget: {self.default_epochs} epochs of {per_epoch} steps = {self.budget:,} "
                f"optimiser steps (the default: 10 epochs, raised to make at least "
                f"{tc.min_steps:,} steps, {spell('--min-steps', 'train.min_steps')}; "
                f"{set_it} sets it)"
            )
        self._say(LEGEND)
        self._say(
            "train figures are means: a step line's over the steps since the previous line, an "
            "epoch line's over the epoch (curves.png draws each at its interval's middle); val "
            "figures are measured at the epoch's end"
        )

    def _write(self, record: dict[str, Any]) -> None:
        """Append ``record`` to metrics.jsonl and its floats to TensorBoard (rank 0 only)."""
        if not self.writes:
            return
        rundir.append_text(self.run_dir / "metrics.jsonl", json.dumps(record) + "\n")
        if self.tensorboard is not None:
            prefix = record["kind"]
            for key, value in record.items():
                if isinstance(value, float) and key not in ("epoch", "step"):
                    self.tensorboard.add_scalar(f"{prefix}/{key}", value, record["step"])

    def _write_skip(self, lr: float) -> None:
        """The record of a step the NaN guard refused."""
        if self.bar is not None:
            self.bar.update(1)
        record = {"kind": "skip", "step": self.state.step, "epoch": self.state.epoch + 1}
        self._write(record | {"reason": "non-finite loss or gradient norm", "lr": lr})

    def _show_progress(self, lr: float) -> None:
        """Advance the bar by one step; show the interval's mean ELBO (or loss) and the lr."""
        if self.bar is None:
            return
        interval = self.state.interval
        self.bar.update(1)
        shown = "elbo" if "elbo" in interval else "loss"
        value = interval[shown] / interval["examples"] - (
            self._data_scale() if shown == "elbo" else 0.0
        )
        self.bar.set_postfix({shown: f"{value:.2f} nats", "lr": f"{lr:.2e}"}, refresh=False)

    def _write_step_record(self, lr: float) -> None:
        acc, now = self.state.interval, time.perf_counter()
        seconds = self.interval_seconds + now - self.timer  # training time since the last record
        record = {"kind": "step", "step": self.state.step, "epoch": self.state.epoch + 1}
        record |= self._in_data_space(means(acc))
        record |= {"lr": lr, "examples_per_s": acc.get("examples", 0.0) / max(seconds, 1e-9)}
        if isinstance(self.objective, NegativeELBO):
            record["beta"] = self.objective.beta
        self.timer, self.interval_seconds, self.state.interval = now, 0.0, {}
        self.steps.append(record)
        self._write(record)
        if self.bar is None:
            self.log(format_record(record, self.budget))

    def _epoch_record(self, seconds: float, val: dict[str, float]) -> dict[str, Any]:
        """The epoch record of ``state.epoch`` (``seconds`` of training); empties the sums."""
        state = self.state
        record = {"kind": "epoch", "epoch": state.epoch, "step": state.step}
        record |= {f"train_{k}": v for k, v in self._in_data_space(means(state.epoch_sums)).items()}
        record |= {f"val_{k}": v for k, v in self._in_data_space(val).items()}
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        record["skipped_steps"] = state.skipped_steps
        # Data examples (images, rows), never examples x importance or Monte-Carlo samples: an
        # IWAE step at K = 5 over a batch of 128 counts 128.
        record["examples"] = int(state.epoch_sums.get("examples", 0.0))
        record["examples_per_s"] = record["examples"] / max(seconds, 1e-9)
        state.epoch_sums = {}
        return record

    def _write_outputs(self) -> None:
        """The trained model, its pictures, the report and TensorBoard's last pictures."""
        from vaekit.report.plots import save_run_pictures

        seconds = time.perf_counter() - self.started
        checkpoint.save_model(
            self.model,
            self.run_dir,
            data=self.dataset.info(),
            config=to_dict(self.config),
            # Which weights these are: train.keep and the epoch they are from.
            metadata=training_metadata(self.device, seconds, self.ctx.world_size)
            | {"keep": self.config.train.keep, "epoch": self.kept_epoch},
        )
        save_run_pictures(self.model, self.dataset, self.run_dir, seed=self.config.train.seed)
        if self.config.train.report:
            self._write_report()
        try:  # pictures, HPARAMS, projector; like the report, never worth the model
            if self.tensorboard is not None:
                self._tensorboard_final()
        except Exception as exc:
            self.log(f"warning: TensorBoard pictures and projector not written: {exc}")

    def _write_report(self) -> None:
        """RUN/report.html, after saying so: it evaluates first (K = 100 importance samples
        on up to 1000 test examples). Under train.max_minutes it gets what is left of the
        budget (training kept some back: ``_closing_seconds``) and fits its evaluation in it;
        with nothing left it is not written, and says how to write it."""
        from vaekit.report.html import write_report

        path = self.run_dir / "report.html"
        skip = spell("--no-report", "config.train.report = False")
        limit = self.config.train.max_minutes
        left = limit * 60.0 - self._train_seconds() if limit is not None else None
        if left is not None and left <= 0:
            self.log(
                f"{path} not written: the time budget "
                f"({spell('--max-minutes', 'train.max_minutes')} {limit:g}) is spent; "
                f"`vaekit report {self.run_dir}` writes it"
            )
            return
        self.log(f"writing the report {path} (a quick evaluation first; {skip} skips it)")
        try:  # the report must never cost the trained model: it is saved before
            write_report(self.run_dir, seed=self.config.train.seed, log=self.log, max_seconds=left)
        except Exception as exc:
            self.log(f"warning: {path} not written: {exc}")

    def _result(self, reason: str) -> TrainResult:
        """Log the summary (stop reason, time, files written) and return the result."""
        self.model.data_info = self.dataset.info()
        run_dir = self.run_dir if self.ctx.is_main else None
        files = written_since(run_dir, self.clock.started_at) if self.writes else []
        seconds = self.clock.seconds()
        lines = summary(self.history, reason, seconds, run_dir if self.writes else None, files)
        lines[2:2] = [self._kept_line()] if self.state.epoch else []
        flags = spell("--epochs or --max-steps", "train.epochs or train.max_steps")
        warning = still_improving(self.history, flags) if reason in ("budget", "time") else None
        lines += [warning] if warning else []
        for line in lines:
            self.log(line)
        return TrainResult(self.model, self.history, self.steps, run_dir, reason, seconds, files)

    def _kept_line(self) -> str:
        """Which weights the model holds (model.safetensors, the returned model), and how to
        keep the other choice."""
        keep, best, last = self.config.train.keep, self.state.best_epoch, self.state.epoch
        flag = spell("--keep best", "train.keep = 'best'")
        where = "model.safetensors holds" if self.writes else "the model holds"
        if keep == "best" and best is not None:
            return (
                f"  {where} the weights of epoch {self.kept_epoch}, the best validation ELBO "
                f"({flag}; the last epoch was {last})"
            )
        line = f"  {where} the weights of the last epoch ({last})"
        if best is not None and best != last:
            line += f"; the best validation ELBO was at epoch {best}: {flag} keeps that one"
        return line

    def _open_tensorboard(self):
        if not (self.writes and self.config.train.tensorboard):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional dependency: pip install 'vaekit[tensorboard]'
            return None
        # purge_step drops events a killed run wrote after the checkpoint we resume from.
        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.state.step)

    def _tensorboard_pictures(self) -> None:
        from vaekit.training.tensorboard import log_pictures

        if not hasattr(self, "tensorboard_x"):  # the same inputs every time, with their labels
            self.tensorboard_x = self.dataset.fixed("test", seed=self.config.train.seed)[:16]
            labels = self.dataset.test.y
            self.tensorboard_y = labels[:16] if labels is not None else None
        x, y = self.tensorboard_x, self.tensorboard_y
        with self._averaged_weights():
            log_pictures(
                self.tensorboard, self.model, x, self.state.step, self.config.train.seed, y_test=y
            )
        self.tensorboard_pictures_step = self.state.step

    def _tensorboard_final(self) -> None:
        from vaekit.training.tensorboard import log_final

        if getattr(self, "tensorboard_pictures_step", None) != self.state.step:
            self._tensorboard_pictures()
        log_final(
            self.tensorboard,
            self.model,
            self.dataset,
            to_dict(self.config),
            self.history,
            self.run_dir,
            self.state.step,
            self.config.train.seed,
        )

    def _open_progress_bar(self):
        if not self.ctx.is_main or self.finished:
            return None
        # tqdm.auto: a terminal bar, or the notebook's in Jupyter (vaekit/support/progress.py).
        return progress_bar(
            self.budget, self.config.train.progress, initial=self.state.step, unit="step"
        )
