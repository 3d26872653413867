"""Latency of ``vaekit explore``'s page: from a slider's input event to the painted frame.

For the default MNIST MLP VAE (hidden 512,256, latent 16) and the default conv VAE (the
network ``--network auto`` picks for 28x28 images), this writes each run's explore.html,
opens it in headless Chromium (driven over the DevTools protocol, as the browser tests),
presses the mouse on the slider of the coordinate with the largest KL and drags it with real
mouse events, one move at a time. For every move the page records (its latency probe, see
``template.html``):

* ``input -> painted``: from the input event's timestamp to the end of the frame that paints
  the new picture (a message posted from requestAnimationFrame runs after that frame's
  rendering), ms. This includes waiting for the next frame (Chromium's 60 Hz frame clock:
  up to 16.7 ms), as a user would see it;
* ``decode + draw``: the synchronous work in the input handler (the JavaScript decoder, the
  canvas write, the map redraw), ms.

The weights come from short training runs (``--train-steps``, default 300; the arithmetic
does not depend on the weights except that the transposed convolutions skip zero inputs).
Pass ``--runs MLP_RUN CONV_RUN`` to measure existing runs instead. Run:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_explore.py --data-dir DIR

where DIR holds MNIST's IDX files. Results are recorded in
benchmarks/notes/explorer-latency.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from vaekit.checkpoint import save_model
from vaekit.config import Config, apply_overrides, to_dict
from vaekit.data import load_dataset
from vaekit.explore import build_explorer
from vaekit.training import train

# The Chromium driver lives with the tests, its main user.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chromium import Chromium

WAIT_FOR_MARK = """new Promise((resolve) => {
  const api = window.vaekitExplorer, want = %d, start = performance.now();
  (function poll() {
    const done = api.state.marks.length >= want || performance.now() - start > 2000;
    if (done) resolve([api.state.marks.length, api.state.lastDecodeMs]);
    else setTimeout(poll, 1);
  })();
})"""


def train_default(network: str, data_dir: str, steps: int, out: Path) -> Path:
    config = apply_overrides(
        Config(),
        [
            "data.name=mnist",
            f"data.data_dir={data_dir}",
            f"model.network={network}",
            f"train.max_steps={steps}",
            "train.epochs=100",
            "train.tensorboard=false",
            "train.progress=plain",
            "train.device=cpu",
        ],
    )
    model = train(config, log=lambda line: None).model  # in memory: no report to evaluate
    dataset = load_dataset("mnist", data_dir)
    save_model(model, out, data=dataset.info(), config=to_dict(config))
    return out


def measure(chromium: Chromium, page: Path, moves: int, warmup: int) -> dict[str, float]:
    chromium.open(page.as_uri())
    dim = chromium.evaluate("window.vaekitExplorer.DATA.order[0]")
    left, right, top, bottom = chromium.evaluate(
        f"(() => {{ const e = document.getElementById('z{dim}'); e.scrollIntoView();"
        "const r = e.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; })()"
    )
    y = (top + bottom) / 2
    value = chromium.evaluate(f"document.getElementById('z{dim}').valueAsNumber") / 1000
    x = left + 8 + value * (right - left - 16)
    chromium.mouse("mouseMoved", x, y, buttons=0)
    chromium.mouse("mousePressed", x, y)
    lo, hi = left + 10, right - 10
    position, direction = x, 1.0
    decode_ms = []
    for i in range(warmup + moves):
        step = 3.0
        if not lo <= position + direction * step <= hi:
            direction = -direction
        position += direction * step
        before = chromium.evaluate("window.vaekitExplorer.state.marks.length")
        chromium.mouse("mouseMoved", position, y)
        count, last_decode = chromium.evaluate(WAIT_FOR_MARK % (before + 1))
        if count <= before:
            raise RuntimeError("a slider move painted no frame within 2 s")
        if i >= warmup:
            decode_ms.append(last_decode)
    chromium.mouse("mouseReleased", position, y, buttons=0)
    marks = chromium.evaluate("window.vaekitExplorer.state.marks")[warmup:]
    marks.sort()
    decode_ms.sort()

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]

    return {
        "moves": len(marks),
        "median": statistics.median(marks),
        "p90": pct(marks, 0.9),
        "max": marks[-1],
        "decode_median": statistics.median(decode_ms),
        "decode_p90": pct(decode_ms, 0.9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="directory with MNIST's IDX files (to train)")
    parser.add_argument("--runs", nargs=2, type=Path, metavar=("MLP_RUN", "CONV_RUN"))
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--moves", type=int, default=200, help="measured slider moves")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured first moves")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-explore-") as tmp:
        if args.runs:
            runs = {"mlp": args.runs[0], "conv": args.runs[1]}
        else:
            if not args.data_dir:
                parser.error("give --data-dir (MNIST's IDX files) or --runs MLP_RUN CONV_RUN")
            runs = {}
            for network in ("mlp", "conv"):
                started = time.perf_counter()
                runs[network] = train_default(
                    network, args.data_dir, args.train_steps, Path(tmp) / network
                )
                print(f"trained {network} in {time.perf_counter() - started:.0f} s")
        results = {}
        with Chromium(width=1280, height=900) as chromium:
            version = chromium.send("Browser.getVersion", browser=True)["product"]
            for network, run in runs.items():
                page, data = build_explorer(run)
                path = Path(tmp) / f"{network}.html"
                path.write_text(page, encoding="utf-8")
                params = sum(n for _, n in data["decoder"]["tensors"])
                results[network] = (
                    measure(chromium, path, args.moves, args.warmup),
                    path.stat().st_size,
                    params,
                )
    print(f"\n{version}, {platform.machine()}, {platform.processor() or 'cpu'}\n")
    print(
        "| decoder | parameters | page size | moves | input -> painted, median | p90 | max "
        "| decode + draw, median | p90 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for network, (r, size, params) in results.items():
        print(
            f"| {network} | {params:,} | {size / 2**20:.2f} MiB | {r['moves']} | "
            f"{r['median']:.1f} ms | {r['p90']:.1f} ms | {r['max']:.1f} ms | "
            f"{r['decode_median']:.1f} ms | {r['decode_p90']:.1f} ms |"
        )


if __name__ == "__main__":
    main()
