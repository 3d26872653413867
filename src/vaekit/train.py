"""The training loop: ``train(config, out) -> TrainResult``. The CLI only parses and calls it.

One epoch = one pass over a fresh permutation of the training split; after each epoch the
validation ELBO (nats per example) is computed on a fixed transform draw of the validation
split and one JSON line goes to ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaekit.config import Config, to_dict
from vaekit.data import Dataset, load_dataset
from vaekit.models import AE, VAE, build_model
from vaekit.objectives import build_objective


@dataclass
class TrainResult:
    """What ``train`` returns: the model (in eval mode), the per-epoch history, the run dir."""

    model: VAE | AE
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; an explicit device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (try --device auto)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: MPS is not available (try --device auto)")
    return torch.device(name)


def resolve_model_config(config: Config, dataset: Dataset) -> None:
    """Fill the model config's data-dependent fields and refuse dishonest likelihoods."""
    model = config.model
    model.data_shape = list(dataset.shape)
    if model.likelihood == "auto":
        model.likelihood = dataset.default_likelihood
    if model.likelihood == "bernoulli" and dataset.support != "binary":
        raise ValueError(
            f"--likelihood bernoulli needs binary data, but {dataset.name!r} has support "
            f"{dataset.support!r}: use a binarised variant or a Gaussian likelihood"
        )


def prepare_run_dir(out: str | Path, overwrite: bool) -> Path:
    """Create an empty run directory; refuse to mix a new run into an old one."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"--out {out}: directory exists and is not empty (use --overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


@torch.no_grad()
def validation_metrics(model: VAE | AE, x: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Mean per-example ELBO and its terms (VAE) or log p(x|f(x)) (AE) in nats over ``x``."""
    model.eval()
    sums: dict[str, float] = {}
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        if isinstance(model, VAE):
            terms = model.elbo(xb)
            values = {"elbo": terms.elbo, "log_px_z": terms.log_px_z, "kl": terms.kl}
        else:
            values = {"log_px_z": model.reconstruction_log_prob(xb)}
        for key, v in values.items():
            sums[key] = sums.get(key, 0.0) + float(v.sum())
    return {key: total / x.shape[0] for key, total in sums.items()}


def train(
    config: Config,
    out: str | Path | None = None,
    overwrite: bool = False,
    dataset: Dataset | None = None,
    log=print,
) -> TrainResult:
    """Train the model described by ``config``; write a run directory to ``out`` if given.

    Returns the trained model (eval mode) and the per-epoch history (nats per example).
    """
    torch.manual_seed(config.train.seed)
    device = resolve_device(config.train.device)
    if dataset is None:
        dataset = load_dataset(
            config.data.name, config.data.data_dir, config.data.val_fraction, config.data.split_seed
        )
    resolve_model_config(config, dataset)
    model = build_model(config.model).to(device)
    objective = build_objective(config.objective, config.model.kind)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    run_dir = prepare_run_dir(out, overwrite) if out is not None else None
    generator = torch.Generator().manual_seed(config.train.seed)
    val_x = dataset.fixed("val", seed=config.data.split_seed).to(device)

    history: list[dict[str, Any]] = []
    for epoch in range(1, config.train.epochs + 1):
        model.train()
        start, sums, seen = time.perf_counter(), {}, 0
        for x, _ in dataset.batches(
            "train", config.train.batch_size, shuffle=True, generator=generator, device=device
        ):
            loss, metrics = objective(model, x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            b = x.shape[0]
            for key, value in {"loss": loss.detach(), **metrics}.items():
                sums[key] = sums.get(key, 0.0) + float(value) * b
            seen += b
        seconds = time.perf_counter() - start
        record: dict[str, Any] = {"epoch": epoch}
        record.update({f"train_{k}": v / seen for k, v in sums.items()})
        if len(val_x):
            val = validation_metrics(model, val_x, config.train.eval_batch_size)
            record.update({f"val_{k}": v for k, v in val.items()})
        record["examples_per_s"] = seen / seconds
        history.append(record)
        if run_dir is not None:
            with open(run_dir / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
        log(_format_record(record))

    model.eval()
    if run_dir is not None:
        from vaekit.checkpoint import save_model
        from vaekit.report.plots import save_run_pictures

        save_model(model, run_dir, data=dataset.info(), config=to_dict(config))
        save_run_pictures(model, dataset, run_dir, seed=config.train.seed)
        try:  # the report must never cost the trained model: it is saved above
            from vaekit.report.html import write_report

            write_report(run_dir, seed=config.train.seed)
        except Exception as exc:
            log(f"warning: {run_dir / 'report.html'} not written: {exc}")
    model.data_info = dataset.info()
    return TrainResult(model=model, history=history, run_dir=run_dir)


def _format_record(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']:>3}"]
    for key in ("train_loss", "val_elbo", "val_log_px_z", "val_kl"):
        if key in record:
            parts.append(f"{key} {record[key]:.3f}")
    parts.append(f"({record['examples_per_s']:.0f} examples/s; nats per example)")
    return "  ".join(parts)
