"""The lecture's first contrast: "what happens if we only minimise reconstruction error?"

``compare`` trains an :class:`~vaekit.AE` and a :class:`~vaekit.VAE` with the same networks,
data, budget and seed (or loads two run directories) and measures, on the test split:

* reconstruction error: squared error ||x - x_hat||^2 summed over the D data dimensions, mean
  per example (x_hat = E[x|z] at z = f(x) for the AE, at z = mu(x) for the VAE);
* prior samples: pictures of E[x|z], z ~ N(0, I), and the sample-quality score (a Fréchet
  distance in the feature space of a classifier, see ``sample_quality_scores``);
* the code distribution against N(0, I): the AE's codes f(x), the VAE's aggregate posterior
  q(z) = mean_x q(z|x) (mean = mean of mu(x); covariance = Cov(mu(x)) + mean of Sigma(x));
* a 2-D map of the codes coloured by label, interpolations between two encoded test images;
* the VAE's held-out nll (importance sampling, :func:`vaekit.evaluate`); the AE has none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vaekit.config import Config
from vaekit.data import Dataset
from vaekit.distributions.functional import kl_full_gaussian_standard_normal
from vaekit.feature_net import frechet_distance, load_or_train
from vaekit.models import MODELS, Model
from vaekit.support.spelling import spell


def comparison_configs(
    data: str = "digits",
    epochs: int = 40,
    latent_dim: int = 8,
    hidden_dims: list[int] | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    lr: float = 5e-3,
    batch_size: int = 32,
) -> dict[str, Config]:
    """Two configs identical in everything (networks, likelihood, data, budget, optimiser,
    seed) except the model kind and its criterion: ``{"ae": ..., "vae": ...}``."""
    configs = {}
    for kind, objective in (("ae", "reconstruction"), ("vae", "elbo")):
        config = Config()
        config.data.name = data
        config.data.data_dir = data_dir
        config.model = MODELS[kind].config_class(
            latent_dim=latent_dim, network="mlp", hidden_dims=list(hidden_dims or [256, 128])
        )
        config.objective.name = objective
        config.train.epochs = epochs
        config.train.batch_size = batch_size
        config.optim.lr = lr
        config.train.seed = seed
        configs[kind] = config
    return configs


# --- the sample-quality score ------------------------------------------------------------------


def sample_quality_scores(
    dataset: Dataset, generated: dict[str, torch.Tensor], seed: int = 0
) -> dict[str, Any]:
    """The sample-quality score of each image set in ``generated``: the Fréchet classifier
    distance (FCD) between its features and the test split's, in the 64-d penultimate layer
    of the small classifier that ``vaekit.feature_net`` trains once per dataset and caches.

    Lower is better. Also returns the same distance for real images of the training split (as
    many as the first generated set) as a floor, and the classifier's test accuracy.
    """
    if dataset.train.y is None:
        raise ValueError(f"dataset {dataset.name!r} has no labels: no classifier features")
    net, meta = load_or_train(dataset)
    with torch.no_grad():
        reference = net.features(dataset.fixed("test", seed=seed).float())
        n = next(iter(generated.values())).shape[0] if generated else len(dataset.train)
        real = dataset.fixed("train", seed=seed)[:n].float()
        scores = {
            name: frechet_distance(net.features(x.float()), reference)
            for name, x in generated.items()
        }
        floor = frechet_distance(net.features(real), reference)
    return {
        "scores": scores,
        "held_out_real": floor,
        "held_out_real_count": real.shape[0],
        "classifier_test_accuracy": meta["test_accuracy"],
        "definition": "Fréchet classifier distance to the test split in the 64-d penultimate "
        f"features of {meta['recipe']['architecture']} trained on the training labels "
        "(lower is better)",
    }


# --- code statistics ---------------------------------------------------------------------------


def code_moments(model: Model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes used for pictures ``[N, m]`` and the (mean ``[m]``, covariance ``[m, m]``) of the
    code distribution: the AE's f(x); the VAE's aggregate posterior (module docstring), from
    the model's ``latent_moments`` (an AE's codes have zero covariance)."""
    with torch.no_grad():
        moments = model.latent_moments(x)
        codes = moments.mean
        cov = torch.cov(codes.double().T) + moments.covariance.double().mean(0)
    return codes, codes.double().mean(0), cov


def code_statistics(mean: torch.Tensor, cov: torch.Tensor) -> dict[str, float]:
    """How far N(mean, cov) is from the prior N(0, I): ||mean||, ||cov - I||_F and
    KL(N(mean, cov) || N(0, I)) in nats."""
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    return {
        "mean_norm": float(mean.norm()),
        "cov_minus_identity_fro": float((cov - eye).norm()),
        "kl_gaussian_fit_to_prior": float(
            kl_full_gaussian_standard_normal(mean, torch.linalg.cholesky(cov))
        ),
    }


# --- the comparison ----------------------------------------------------------------------------


def setup_differences(ae_config: dict[str, Any], vae_config: dict[str, Any]) -> list[str]:
    """The ``section.field`` names where two runs' full configs differ (``config.json``).

    In the model section only the fields both models have count, with ``kind``: the fields
    only one model defines (the VAE's posterior and prior) come with its kind."""
    differ = []
    for section in sorted(set(ae_config) | set(vae_config)):
        a, v = ae_config.get(section) or {}, vae_config.get(section) or {}
        keys = set(a) | set(v) if section != "model" else (set(a) & set(v)) | {"kind"}
        differ += [f"{section}.{k}" for k in sorted(keys) if a.get(k) != v.get(k)]
    return differ


def _runs(runs) -> str:
    """How the message names the two runs: the flag, or the keyword."""
    return spell(f"--runs {runs[0]} {runs[1]}", f"runs=({str(runs[0])!r}, {str(runs[1])!r})")


def compare(
    out: str | Path,
    data: str = "digits",
    epochs: int = 40,
    latent_dim: int = 8,
    hidden_dims: list[int] | None = None,
    seed: int = 0,
    runs: tuple[str | Path, str | Path] | None = None,
    num_samples: int = 500,
    lr: float = 5e-3,
    batch_size: int = 32,
    data_dir: str | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (or load, ``runs = (AE_RUN, VAE_RUN)``) an AE and a VAE and write the comparison
    to ``out``: ``report.html``, ``compare.json``, figures. Returns the JSON-ready dict.

    ``num_samples``: K importance samples per test example for the VAE's nll.
    """
    from vaekit.evaluate import evaluate, load_run
    from vaekit.lessons.ae_vs_vae_page import write_compare_report
    from vaekit.outputs import check_outputs
    from vaekit.training import prepare_run_dir, train

    check_outputs({"out": out}, inputs=runs or ())
    out = prepare_run_dir(out, overwrite)
    if runs is None:
        from vaekit.data import load_dataset

        configs = comparison_configs(
            data, epochs, latent_dim, hidden_dims, seed, data_dir, lr, batch_size
        )
        d = configs["vae"].data
        dataset = load_dataset(d.name, d.data_dir, d.val_fraction, d.split_seed)
        models: dict[str, Model] = {}
        for kind, config in configs.items():
            log(f"training the {kind.upper()} ({epochs} epochs) -> {out / kind}")
            models[kind] = train(config, out=out / kind, dataset=dataset, log=lambda _: None).model
        source = {kind: str(out / kind) for kind in configs}
    else:
        (ae, ae_data), (vae, vae_data) = (load_run(run, data_dir) for run in runs)
        if ae.has_likelihood or not vae.has_likelihood:
            raise ValueError(f"{_runs(runs)}: expected an AE run, then a VAE run")
        if ae_data.info() != vae_data.info() or ae.data_shape != vae.data_shape:
            raise ValueError(f"{_runs(runs)}: the runs used different data")
        models, dataset, source = (
            {"ae": ae, "vae": vae},
            vae_data,
            {
                "ae": str(runs[0]),
                "vae": str(runs[1]),
            },
        )
    from vaekit.checkpoint import read_descriptor

    run_configs = [read_descriptor(source[kind]).get("config") or {} for kind in ("ae", "vae")]
    if dataset.test.y is None:
        raise ValueError(f"dataset {dataset.name!r} has no labels: the code map needs them")

    x = dataset.fixed("test", seed=seed)
    labels = dataset.test.y
    result: dict[str, Any] = {
        "data": dataset.name,
        "runs": source,
        "config_differences": setup_differences(*run_configs),
        "models": {},
    }
    generated, codes = {}, {}
    for kind, model in models.items():
        model.eval().cpu()
        with torch.no_grad():
            recon = model.reconstruct(x)
            sq = (x - recon).flatten(1).square().sum(1).double()
            g = torch.Generator().manual_seed(seed)
            generated[kind] = model.sample(1000, generator=g)
        codes[kind], mean, cov = code_moments(model, x)
        result["models"][kind] = {
            "latent_dim": model.latent_dim,
            "reconstruction_squared_error": float(sq.mean()),
            "reconstruction_squared_error_stderr": float(sq.std() / math.sqrt(sq.numel())),
            "code_distribution": code_statistics(mean, cov),
        }
    log("scoring prior samples")
    quality = sample_quality_scores(dataset, generated, seed=seed)
    for kind in models:
        result["models"][kind]["prior_sample_score"] = quality["scores"][kind]
    result["sample_quality"] = {k: v for k, v in quality.items() if k != "scores"}
    log(f"VAE held-out nll with K = {num_samples}")
    result["models"]["vae"]["held_out"] = evaluate(
        models["vae"], dataset, split="test", num_samples=num_samples, seed=seed
    )
    result["models"]["ae"]["held_out"] = None
    result["units"] = {
        "reconstruction_squared_error": "sum over the data dimensions of (x - x_hat)^2, mean "
        "per test example (x in the model's input units, here [0, 1] intensities)",
        "prior_sample_score": quality["definition"],
        "code_distribution": "AE: codes f(x); VAE: aggregate posterior; KL in nats",
        "held_out": "vaekit.evaluate on the test split: nll in nats per example",
    }
    write_compare_report(result, models, x, labels, codes, generated, out, seed=seed)
    from vaekit.rundir import atomic_write_json

    atomic_write_json(out / "compare.json", result)
    result["report"] = str(out / "report.html")
    return result


def compare_headline(result: dict[str, Any]) -> list[str]:
    """Short terminal summary of a comparison (units in each line)."""
    ae, vae = result["models"]["ae"], result["models"]["vae"]
    held = vae["held_out"]
    return [
        f"{'':<44}{'AE':>10}{'VAE':>10}",
        f"{'test reconstruction squared error / example':<44}"
        f"{ae['reconstruction_squared_error']:>10.4f}{vae['reconstruction_squared_error']:>10.4f}",
        f"{'prior-sample score (Fréchet, lower better)':<44}"
        f"{ae['prior_sample_score']:>10.2f}{vae['prior_sample_score']:>10.2f}",
        f"{'KL(code Gaussian fit || N(0,I)), nats':<44}"
        f"{ae['code_distribution']['kl_gaussian_fit_to_prior']:>10.3f}"
        f"{vae['code_distribution']['kl_gaussian_fit_to_prior']:>10.3f}",
        f"{'held-out nll, nats per example':<44}{'none':>10}{held['nll']:>10.3f}",
        f"real held-out images score {result['sample_quality']['held_out_real']:.2f}; "
        f"the AE defines no likelihood; report: {result['report']}",
    ]
