"""One markdown row per run directory: its setup and the test numbers of its eval.json.

    .venv/bin/python benchmarks/summarise_runs.py runs/abl-*

Each RUN must hold config.json (written by `vaekit train`) and eval.json (written by
`vaekit evaluate RUN`). Training time is the sum over epochs of the examples seen divided by
the recorded examples/s: training steps only, without validation or the final pictures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def row(run: Path) -> str:
    config = json.loads((run / "config.json").read_text())["config"]
    result = json.loads((run / "eval.json").read_text())
    objective = config["objective"]["name"]
    if objective == "iwae":
        objective = f"IWAE K={config['objective']['num_importance_samples']}"
    ema = config["optim"].get("ema_decay")
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    batch = config["train"]["batch_size"]
    previous, seconds = 0, 0.0
    for r in epochs:
        seconds += (r["step"] - previous) * batch / r["examples_per_s"]
        previous = r["step"]
    return (
        f"| {run.name} | {config['data']['name']} | {config['model']['likelihood']} | "
        f"{objective} | "
        f"{config['model']['latent_dim']} | {config['schedule']['name']} | "
        f"{ema if ema is not None else 'off'} | {epochs[-1]['step']:,} | {seconds / 60:.1f} | "
        f"{result['nll']:.2f} ± {result['nll_stderr']:.2f} | {result['bits_per_dim']:.4f} | "
        f"{result['elbo']:.2f} | {result['kl']:.2f} | {result['active_units']} | "
        f"{result['num_examples']:,} x K={result['num_samples']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    for run in args.runs:
        for name in ("config.json", "metrics.jsonl", "eval.json"):
            if not (run / name).is_file():
                hint = " (run `vaekit evaluate RUN` first)" if name == "eval.json" else ""
                parser.error(f"{run / name}: not found{hint}")
    print(
        "| run | data | likelihood | objective | m | schedule | EMA | steps | training min | "
        "test nll (nats) | bits/dim | ELBO | KL | active units | test images x K |"
    )
    print("|" + "---|" * 15)
    for run in args.runs:
        print(row(run))


if __name__ == "__main__":
    main()
