"""Two gloo "nodes" against one process: training throughput, and the time from a node's
kill to training again.

    python benchmarks/bench_elastic.py                       # full size (a few minutes)
    python benchmarks/bench_elastic.py --part restart --repeats 5
    python benchmarks/bench_elastic.py --tiny                # a smoke run (a minute or two)

Run it alone on the machine (the numbers are rates and latencies). It writes
``benchmarks/results/elastic.json`` (``--results`` moves it) and prints a markdown table.

The data: MNIST when ``$VAEKIT_DATA_DIR`` holds it, else the built-in digits (``--data``
chooses). The model: the reference MLP VAE (hidden 512,256, latent 16, batch 128, Adam).

* ``throughput``: ``vaekit train`` for ``--steps`` steps in one process with 2 threads,
  against the same command under two torchrun agents ("nodes") on 127.0.0.1 with c10d
  rendezvous, one process each, one thread each (gloo). Images per second come from the
  run's own ``metrics.jsonl``: the step records' ``examples_per_s`` (training time only),
  their harmonic mean after the first record (the warm-up), each record covering
  ``--log-every`` steps of one batch.
* ``restart``: the same two-node job, the elastic recipe of docs/guide/training.md
  (``--nnodes 1:2 --max-restarts``, torchrun's default monitor interval and last call). Once
  it trains, node 0's worker is SIGKILLed; the time is from the kill to the first step line
  the restarted job prints (``--log-every 1``: one step after the resume), seen by polling
  the agents' logs every 10 ms. Repeated ``--repeats`` times in one job; the median is
  reported. It covers the agents noticing, the next rendezvous, starting the workers
  (imports), loading the data and the checkpoint, and one step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Finding and killing the job's processes lives with the elastic test, its other user.
sys.path.insert(0, str(HERE.parent / "tests"))
from torchrun_jobs import TOKEN_ENV, children, free_port, kill_all  # noqa: E402

STEP_LINE = re.compile(r"^step\s+\d+/", re.MULTILINE)
RESTARTED = "torchrun restarted this job"


def default_data() -> str:
    """MNIST when $VAEKIT_DATA_DIR holds it (as the loader looks there), else digits."""
    env = os.environ.get("VAEKIT_DATA_DIR")
    return "mnist" if env and (Path(env) / "mnist").is_dir() else "digits"


def train_args(args, out: Path, steps: int, log_every: int) -> list[str]:
    return [
        "train", "--data", args.data, "--model", "vae", "--network", "mlp",
        "--hidden-dims", "512,256", "--latent-dim", "16", "--batch-size", "128",
        "--max-steps", str(steps), "--log-every", str(log_every),
        "--checkpoint-every", str(args.checkpoint_every), "--device", "cpu", "--seed", "0",
        "--progress", "plain", "--set", "train.tensorboard=false",
        "--set", "train.report=false", "--out", str(out),
    ]  # fmt: skip


def images_per_second(run: Path) -> float | None:
    """Harmonic mean of the step records' examples_per_s, the first (warm-up) left out."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["examples_per_s"] for r in records if r["kind"] == "step"][1:]
    return statistics.harmonic_mean(rates) if rates else None


class TwoNodes:
    """Two torchrun agents on 127.0.0.1 running ``vaekit`` with ``argv``; logs in ``work``."""

    def __init__(self, argv: list[str], work: Path, max_restarts: int) -> None:
        self.token = uuid.uuid4().hex
        env = os.environ | {
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",  # the step lines reach the logs as they are printed
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",  # see docs/guide/training.md
            TOKEN_ENV: self.token,
        }
        torchrun = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "1:2",
            "--nproc-per-node", "1", "--max-restarts", str(max_restarts),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
            "--rdzv-id", f"bench-{self.token[:8]}", "-m", "vaekit", *argv,
        ]  # fmt: skip
        self.logs = [work / "node0.log", work / "node1.log"]
        self.agents = []
        for log in self.logs:
            with log.open("w") as out:
                self.agents.append(
                    subprocess.Popen(torchrun, env=env, stdout=out, stderr=subprocess.STDOUT)
                )

    def texts(self) -> list[str]:
        return [log.read_text(errors="replace") for log in self.logs]

    def wait(self, timeout: float) -> list[int]:
        return [agent.wait(timeout=timeout) for agent in self.agents]

    def close(self) -> None:
        kill_all(self.token)
        for agent in self.agents:
            agent.wait()


def part_throughput(args, work: Path) -> dict:
    argv = train_args(args, work / "single", args.steps, args.log_every)
    env = os.environ | {"OMP_NUM_THREADS": "2"}
    subprocess.run(
        [sys.executable, "-m", "vaekit", *argv], env=env, check=True, capture_output=True
    )
    single = images_per_second(work / "single")
    nodes = TwoNodes(train_args(args, work / "two", args.steps, args.log_every), work, 0)
    try:
        codes = nodes.wait(timeout=3600)
    finally:
        nodes.close()
    if codes != [0, 0]:
        raise SystemExit(f"two nodes failed ({codes}):\n{''.join(nodes.texts())[-2000:]}")
    two = images_per_second(work / "two")
    return {
        "steps": args.steps,
        "log_every": args.log_every,
        "one process, 2 threads": {"images_per_second": single},
        "two gloo nodes, 1 thread each": {"images_per_second": two},
        "two_over_one": two / single if single and two else None,
    }


def steps_since_restart(texts: list[str], before: list[int]) -> int:
    """Step lines printed after a restart message newer than the counts ``before`` (rank 0,
    which prints both, may have moved to the other node)."""
    newer = [
        t.split(RESTARTED)[-1] for t, n in zip(texts, before, strict=True) if t.count(RESTARTED) > n
    ]
    return max((len(STEP_LINE.findall(tail)) for tail in newer), default=0)


def wait_for(condition, what: str, nodes: TwoNodes, timeout: float = 600) -> float:
    """Poll every 10 ms until ``condition(each log's text)``; the monotonic time it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition(nodes.texts()):
            return time.monotonic()
        if any(agent.poll() is not None for agent in nodes.agents):
            break
        time.sleep(0.01)
    raise SystemExit(f"restart: no {what}:\n{''.join(nodes.texts())[-2000:]}")


def part_restart(args, work: Path) -> dict:
    steps = 10**6  # the job never ends by itself: it is killed after the last measurement
    nodes = TwoNodes(train_args(args, work / "restart", steps, 1), work, args.repeats + 1)
    seconds = []
    try:
        wait_for(lambda texts: len(STEP_LINE.findall("".join(texts))) >= 3, "training", nodes)
        for _ in range(args.repeats):
            before = [text.count(RESTARTED) for text in nodes.texts()]
            workers = children(nodes.agents[0].pid)
            if not workers:
                raise SystemExit("restart: node 0 has no worker to kill")
            killed = time.monotonic()
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            again = wait_for(lambda t, b=before: steps_since_restart(t, b) >= 1, "step", nodes)
            seconds.append(again - killed)
            # A few steps more before the next kill.
            wait_for(lambda t, b=before: steps_since_restart(t, b) >= 3, "steps", nodes)
    finally:
        nodes.close()
    return {
        "repeats": args.repeats,
        "seconds_kill_to_training": seconds,
        "median_seconds": statistics.median(seconds),
    }


PARTS = {"throughput": part_throughput, "restart": part_restart}


def table(results: dict) -> str:
    lines = ["| measurement | value |", "|---|---|"]
    if "throughput" in results:
        t = results["throughput"]
        for name in ("one process, 2 threads", "two gloo nodes, 1 thread each"):
            rate = t[name]["images_per_second"]
            lines.append(f"| {name} | {rate:,.0f} images/s |" if rate else f"| {name} | - |")
        if t["two_over_one"]:
            lines.append(f"| two nodes / one process | {t['two_over_one']:.2f} |")
    if "restart" in results:
        r = results["restart"]
        each = ", ".join(f"{s:.1f}" for s in r["seconds_kill_to_training"])
        lines.append(f"| kill to training again, median of {r['repeats']} | "
                     f"{r['median_seconds']:.1f} s ({each} s) |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--data", default=default_data(), help="mnist, digits or a path")
    parser.add_argument("--steps", type=int, default=1000, help="throughput: steps per run")
    parser.add_argument("--log-every", type=int, default=50, help="throughput: steps a record")
    parser.add_argument("--checkpoint-every", type=int, default=20, help="steps a checkpoint")
    parser.add_argument("--repeats", type=int, default=3, help="restart: kills")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: tiny sizes")
    parser.add_argument("--work", type=Path, help="scratch folder (default: temporary)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.tiny:
        args.data, args.steps, args.log_every, args.repeats = "digits", 30, 5, 1
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        results: dict = {"data": args.data, "tiny": args.tiny}
        for name in PARTS if args.part == "all" else [args.part]:
            (work / name).mkdir(parents=True, exist_ok=True)
            results[name] = PARTS[name](args, work / name)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "elastic.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
