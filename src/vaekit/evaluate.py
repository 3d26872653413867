"""Honest evaluation: every number is the quantity its name says, with its unit.

* ``nll``: -log p(x) in nats per example, estimated by importance sampling with
  K = ``num_samples`` draws from q(z|x) per example (Burda et al. 2015, §3). The estimate of
  log p(x) is biased low (Jensen), so ``nll`` is an upper bound on the true nll in
  expectation that tightens as K grows. ``nll_stderr`` is its standard error across
  examples: ``std(log p_hat(x_i), ddof=1) / sqrt(N)``.
* ``elbo``, ``log_px_z``, ``kl``: nats per example (the ELBO with one Monte-Carlo draw).
* Spaces and bits: ``nll``, ``elbo`` and ``log_px_z`` are of the data *as given* (``space``
  says which; the model-space figures are kept where they differ); ``bits_per_dim`` is the
  nll of the discrete data in bits per dimension, ``bits_per_dim_basis`` says how
  (:mod:`vaekit.evaluation.likelihood_space`).
* ``references``: what the nll is read against, in its space: uniform noise, independent
  dimensions fitted on the training split, the preset's and the published record
  (:mod:`vaekit.evaluation.references`).
* ``kl_per_dim``, ``kl_correlation``, ``active_units``, ``aggregate_posterior``: the latent
  space over the examples (defined in :mod:`vaekit.evaluation.latent_statistics`).
* ``frechet_classifier_distance`` (FCD): the Fréchet distance between Gaussians fitted to
  the features of real test images and of generated ones E[x|z], z ~ N(0, I), in the feature
  space of vaekit's own small classifier (``vaekit.feature_net``). Not FID: FID uses the
  Inception network; FCD values are only comparable between models of the same dataset.

Each key's label, unit and definition live in one table, :mod:`vaekit.metrics`, which the
CLI print and the HTML report read too.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from vaekit.data import DataError, Dataset
from vaekit.evaluation.chunking import DEFAULT_MEMORY_BUDGET_MB, choose_chunk_size
from vaekit.evaluation.importance import CompiledChunk, log_likelihood
from vaekit.evaluation.latent_statistics import latent_statistics
from vaekit.evaluation.likelihood_space import likelihood_results, to_data_space
from vaekit.evaluation.references import references
from vaekit.metrics import units_of
from vaekit.models import Model
from vaekit.support.device import DEFAULT_DEVICE, resolve_device
from vaekit.support.progress import format_seconds, progress_bar
from vaekit.support.runtime import keep_freed_memory

# `vaekit evaluate`'s settings. Quick (the default, and the end-of-training report's): K = 100
# on at most 1000 examples, 10^5 decoded rows, seconds on 2 CPU cores even for a conv model
# (about 8,500 rows per second). The IWAE bound's gain from K = 100 to K = 5000 is well under
# a nat per example on MNIST-sized data, below the standard error of a 1000-example mean,
# so the quick number tells a good run from a bad one. Final (--final): K = 5000 on every
# example, the number to publish; 50 times the draws on every example, minutes to hours.
QUICK_NUM_SAMPLES, QUICK_MAX_EXAMPLES = 100, 1000
FINAL_NUM_SAMPLES = 5000


def load_run(
    run: str | Path, data_dir: str | None = None, device: str | torch.device = "cpu"
) -> tuple[Model, Dataset]:
    """Load a run's model onto ``device`` and the dataset it was trained on (as recorded in
    config.json)."""
    from vaekit.checkpoint import load, read_descriptor
    from vaekit.data import load_dataset

    model = load(run, map_location=device)
    descriptor = read_descriptor(run)
    data_info = descriptor.get("data") or {}
    data_config = (descriptor.get("config") or {}).get("data", {})
    name = data_info.get("name") or data_config.get("name")
    if name is None:
        raise ValueError(f"{run}: config.json does not say which dataset the model was trained on")
    try:
        dataset = load_dataset(
            name,
            data_dir or data_config.get("data_dir"),
            data_config.get("val_fraction", 0.1),
            data_config.get("split_seed", 0),
            image_size=data_config.get("image_size"),
            label_column=data_config.get("label_column"),
            columns=data_config.get("columns") or None,
        )
    except DataError as exc:
        raise DataError(f"{exc} (the run's training data; for new data give --data PATH)") from None
    return model, data_for_model(model, dataset)


def data_for_model(model: Model, dataset: Dataset) -> Dataset:
    """``dataset`` as ``model``'s likelihood models it: a discrete likelihood sees the levels
    themselves, never dequantised values (``Dataset.as_levels``)."""
    if _is_discrete(model):
        return dataset.as_levels(f"the model's likelihood {model.config.likelihood!r}")
    return dataset


def _is_discrete(model) -> bool:
    return bool(getattr(getattr(model, "likelihood", None), "discrete", False))


@torch.no_grad()
def evaluate(
    model: Model,
    dataset: Dataset,
    split: str = "test",
    num_samples: int = 5000,
    batch_size: int = 100,
    chunk_size: int | None = None,
    seed: int = 0,
    max_examples: int | None = None,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    fcd: bool = True,
    log=None,
    progress: str = "auto",
    max_seconds: float | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``split``; returns a JSON-ready dict (see the module doc).

    ``max_seconds``: a time budget (the end-of-training report's, under train.max_minutes):
    the examples are cut to those the timed estimate fits in it (at least one batch), and the
    FCD is left out where its classifier would be trained first; both are said through
    ``log``.

    The log-likelihood runs batched over ``batch_size`` examples and chunked over samples:
    each decoder call sees ``[chunk * batch, m]`` latents, with ``chunk`` picked from
    ``memory_budget_mb`` (MiB) unless ``chunk_size`` is given. ``fcd`` adds the Fréchet
    classifier distance where the dataset has class labels (integers >= 0; trains and caches
    the classifier once). A model without a likelihood (``has_likelihood`` False, e.g. an
    AE) gets no nll, ELBO or bits/dim: only what it defines (its per-example metrics, e.g.
    the reconstruction term, and its latent statistics); ``likelihood`` says so.
    ``progress`` (auto, bar, plain; see ``vaekit.support.progress``) shows the evaluation's progress
    as a bar with its ETA; without a bar, ``log`` (if given) gets a line at every tenth of
    the examples. The nll comes with its references (:mod:`vaekit.evaluation.references`) under
    ``references``; ``config`` (a run's config.json ``config``) adds its preset's record.
    """
    model.eval()
    dataset = data_for_model(model, dataset)
    device = next(model.parameters()).device
    if device.type == "cpu":
        keep_freed_memory()  # the chunk loop reuses its memory (vaekit/support/runtime.py)
    x_all = dataset.fixed(split, seed=seed)
    y_all = dataset.split(split).y  # labels, in the same order as x_all (or None)
    # A whole first batch, to time the final setting's decoder calls on (see below).
    first = (x_all[:batch_size], y_all[:batch_size] if y_all is not None else None)
    if max_examples is not None:
        x_all = x_all[:max_examples]
        y_all = y_all[:max_examples] if y_all is not None else None
    if x_all.shape[0] == 0:
        raise ValueError(f"split {split!r} of {dataset.name!r} is empty")
    x_all = x_all.to(next(model.parameters()).dtype)
    if model.has_likelihood and chunk_size is None:
        chunk_size = choose_chunk_size(model, batch_size, num_samples, memory_budget_mb)
    torch.manual_seed(seed)
    log_px: list[torch.Tensor] = []
    per_example: dict[str, list[torch.Tensor]] = {}
    total, started, next_line = x_all.shape[0], time.perf_counter(), 0.1
    what = f"log p(x), K = {num_samples}" if model.has_likelihood else "evaluating"
    timed = model.has_likelihood and (log is not None or max_seconds is not None)
    if timed:  # the time it will take, before it starts
        calls = (model, x_all, y_all, batch_size, device)
        each = _seconds_per_example(*calls, num_samples, chunk_size)  # seconds per example
        fits = total if max_seconds is None else int(max_seconds / each)
        if fits < total:  # the time budget: fewer examples (whole batches), at least one batch
            total = min(total, max(batch_size, fits // batch_size * batch_size))
            x_all, y_all = x_all[:total], y_all[:total] if y_all is not None else None
            if log is not None:
                budget = format_seconds(max_seconds)
                log(f"the time budget ({budget}) fits {total} examples at K = {num_samples}")
        if log is not None:
            split_size = len(dataset.split(split))
            final = None  # the final setting's time, where this is not it
            if num_samples < FINAL_NUM_SAMPLES or total < split_size:
                chunk = choose_chunk_size(model, batch_size, FINAL_NUM_SAMPLES, memory_budget_mb)
                final_calls = (model, first[0].to(x_all.dtype), first[1], batch_size, device)
                final = _seconds_per_example(*final_calls, FINAL_NUM_SAMPLES, chunk) * split_size
            log(_estimate_line(each * total, final, num_samples, total, split_size, split))
    # under torch.compile where the evaluation is long enough to pay for the compile
    compiled = CompiledChunk.if_it_pays(model, total, num_samples) if model.has_likelihood else None
    bar = progress_bar(total, progress, unit="example", desc=what)
    try:
        for start in range(0, total, batch_size):
            x = x_all[start : start + batch_size].to(device)
            y = y_all[start : start + batch_size].to(device) if y_all is not None else None
            for key, value in model.per_example_metrics(x, y=y).items():
                per_example.setdefault(key, []).append(value.cpu())
            if model.has_likelihood:
                log_px.append(
                    log_likelihood(model, x, num_samples, chunk_size, y=y, compiled=compiled).cpu()
                )
            done = start + x.shape[0]
            if bar is not None:
                bar.update(x.shape[0])
            elif log is not None and (done / total >= next_line or done == total):
                next_line = math.floor(done / total * 10 + 1) / 10
                elapsed = time.perf_counter() - started
                left = elapsed / done * (total - done)
                log(
                    f"  {what}: {done}/{total} examples, "
                    f"{elapsed:.0f} s elapsed, about {left:.0f} s left"
                )
    finally:
        if bar is not None:
            bar.close()
    result: dict[str, Any] = {"split": split, "num_examples": x_all.shape[0]}
    if not model.has_likelihood:
        result["likelihood"] = (
            f"none: model {model.name!r} defines no likelihood p(x), so no nll, ELBO or "
            "bits/dim is reported"
        )
    result |= {key: float(torch.cat(v).double().mean()) for key, v in per_example.items()}
    if model.has_codebook:
        result |= model.codebook_statistics(x_all)
    if model.has_continuous_latent:
        stats = latent_statistics(model, x_all, y=y_all)
        stats.pop("mu")
        result.update(stats)
    labels = dataset.train.y
    fcd = fcd and labels is not None and not labels.is_floating_point() and labels.min() >= 0
    if fcd:
        from vaekit.feature_net import frechet_classifier_distance, is_cached

        if max_seconds is not None and not is_cached(dataset):
            fcd = False  # training the classifier first is not in the time budget
            if log is not None:
                log(
                    "the Fréchet classifier distance is left out: its classifier would be "
                    "trained first, outside the time budget (`vaekit evaluate RUN` trains it "
                    "once and caches it)"
                )
    if fcd:
        result.update(
            frechet_classifier_distance(
                model, dataset, split=split, seed=seed, max_examples=max_examples or 10000
            )
        )
    if model.has_likelihood:
        result |= likelihood_results(torch.cat(log_px).double(), dataset, _is_discrete(model))
        to_data_space(result, dataset)  # nll, ELBO and log p(x|z) of the data as given
        if model.takes_labels:  # every density is given the example's own label
            result["conditioned_on"] = "the label y: nll is -log p(x|y), elbo bounds log p(x|y)"
        result["references"] = references(
            dataset,
            split,
            result["num_examples"],
            bits="bits_per_dim" in result,
            conditional=model.takes_labels,
            config=config,
        )
        result |= {"num_samples": num_samples, "chunk_size": chunk_size, "batch_size": batch_size}
    result["units"] = units_of(result)  # the table in vaekit.metrics
    return result


def _seconds_per_example(model, x_all, y_all, batch_size, device, k, chunk) -> float:
    """Seconds of log p(x) per example at ``k`` draws, ``chunk`` per decoder call: a call is
    timed as the evaluation makes them (a batch of examples times ``chunk`` draws), twice,
    the faster counting (the first pays one-time costs), with its own random draws, so the
    evaluation's results do not change."""
    x = x_all[:batch_size].to(device)
    y = y_all[:batch_size].to(device) if y_all is not None else None
    cuda = [device.index or 0] if device.type == "cuda" else []
    chunk, calls = min(chunk, k), []
    with torch.random.fork_rng(devices=cuda):
        for _ in range(2):
            started = time.perf_counter()
            model.log_likelihood(x, chunk, chunk, y=y)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            calls.append(time.perf_counter() - started)
    return min(calls) * math.ceil(k / chunk) / x.shape[0]


def _estimate_line(
    seconds: float, final: float | None, k: int, n: int, split_size: int, split: str
) -> str:
    """The estimated ``seconds`` of log p(x) for ``k`` draws on ``n`` of the ``split_size``
    examples, and ``final``, those of the final setting (None: this is it)."""
    from vaekit.support.spelling import spell

    line = (
        f"estimated time for log p(x): about {format_seconds(seconds)} (K = {k} importance "
        f"samples on {n} of the {split_size} {split} examples, from a timed decoder call)"
    )
    if final is not None:
        flag = spell("--final", f"num_samples={FINAL_NUM_SAMPLES}, max_examples=None")
        line += (
            f"; the final number ({flag}: K = {FINAL_NUM_SAMPLES} on all {split_size}) "
            f"would take about {format_seconds(final)}"
        )
    return line


def evaluation_setting(
    final: bool, num_samples: int | None, max_examples: int | None, new_data: bool
) -> tuple[int, int | None]:
    """``vaekit evaluate``'s K and example limit: quick by default (K = 100 on at most 1000
    examples; new data: all its rows), K = 5000 on every example with ``final``; given
    values replace the default's. ``final`` with either given is refused: it names both."""
    if final:
        if num_samples is not None or max_examples is not None:
            raise ValueError(
                "--final is K = 5000 on every example: give it alone, or --num-samples and "
                "--max-examples without it"
            )
        return FINAL_NUM_SAMPLES, None
    quick_examples = None if new_data else QUICK_MAX_EXAMPLES
    return num_samples or QUICK_NUM_SAMPLES, max_examples or quick_examples


def evaluate_run(
    run: str | Path,
    data: str | Path | None = None,
    output: str | Path | None = None,
    *,
    data_dir: str | None = None,
    log=None,
    trust_scale: bool = False,
    unknown_categories: str = "error",
    save: bool = True,
    device: str = DEFAULT_DEVICE,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate a run directory's model on its dataset; with ``save``, also write
    ``RUN/eval.json`` (see :func:`save_evaluation`). A ``report.html`` beside it then shows
    older numbers until ``vaekit.report.html.refresh_report(RUN)`` rewrites it, which
    ``vaekit evaluate`` does (the report is built on this module, not the other way round).

    ``data``: evaluate on new data instead (any format ``train`` reads, on the training data's
    scale; all its rows; see :mod:`vaekit.data.new_data`); the result is then written only
    to ``output`` if given, never over ``RUN/eval.json``. ``options`` are :func:`evaluate`'s
    keyword arguments; ``unknown_categories``: what a new table's category that training
    never saw becomes ("error", or "missing": a missing cell). ``device``: auto, cpu, cuda,
    cuda:N or mps, as ``vaekit train --device`` reads it
    (:func:`vaekit.support.device.resolve_device`); the weights are loaded onto it and every
    batch runs there. The result records the SHA-256 of the weights it evaluated
    (``model_sha256``) so a report can tell a stale eval.json, and where and how long it ran
    (``eval_seconds``, ``device``, ``torch_version``, ``vaekit_version``). It is strict JSON:
    a non-finite number is None, with the reason under ``"null_reasons"``.
    """
    from vaekit.checkpoint import load, read_descriptor
    from vaekit.data.new_data import as_dataset, read_new_data
    from vaekit.outputs import check_outputs
    from vaekit.rundir import atomic_write_bytes
    from vaekit.support.jsonsafe import dumps, finite_json
    from vaekit.support.provenance import environment

    check_outputs({"output": output}, inputs=[run, data])
    on = resolve_device(device, field="device")  # before anything is read: a bad name is cheap
    started = time.perf_counter()
    if data is not None:
        model = load(run, map_location=on)
        new = read_new_data(
            data,
            model.data_info,
            trust_scale=trust_scale,
            columns=model.config.columns,
            unknown_categories=unknown_categories,
        )
        dataset = as_dataset(new, model.data_info)
        options = {**options, "split": "test", "fcd": False}
    else:
        model, dataset = load_run(run, data_dir, on)
        options = {"config": read_descriptor(run).get("config"), **options}
    result = evaluate(model, dataset, log=log, **options)
    result["dataset"] = dataset.name
    result["model_sha256"] = (read_descriptor(run).get("weights") or {}).get("sha256")
    result["eval_seconds"] = time.perf_counter() - started
    result |= environment(next(model.parameters()).device)
    reasons = {}
    if result["num_examples"] < 2:
        why = "a standard error needs at least 2 examples"
        reasons = {"nll_stderr": why, "bits_per_dim_stderr": why}
    result = finite_json(result, reasons)
    if data is None and save:
        save_evaluation(run, result)
    elif data is not None and output is not None:
        atomic_write_bytes(Path(output), (dumps(result, indent=2) + "\n").encode())
    return result


def save_evaluation(run: str | Path, result: dict[str, Any]) -> Path:
    """Write ``result`` to ``RUN/eval.json`` atomically, under the run's lock (another vaekit
    process writing the run makes this a one-line error naming it). Raises OSError naming
    the file if it cannot be written (a read-only run directory, a full disk)."""
    from vaekit import rundir
    from vaekit.rundir import atomic_write_bytes
    from vaekit.support import jsonsafe

    path = Path(run) / "eval.json"
    text = jsonsafe.dumps(jsonsafe.finite_json(result), indent=2) + "\n"
    with rundir.locked(run):
        atomic_write_bytes(path, text.encode())
    return path
