"""Resume: a run SIGKILLed mid-epoch and resumed ends bitwise equal to one that never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import faults
from vaekit.cli import main

torch.set_num_threads(1)
SRC = Path(__file__).resolve().parents[1] / "src"
# Wall-clock fields are the only ones allowed to differ between two runs.
CLOCK_FIELDS = {"examples_per_s"}

ARGS = [
    "--data", "digits", "--hidden-dims", "32", "--latent-dim", "2", "--network", "mlp",
    "--batch-size", "64", "--epochs", "3", "--device", "cpu", "--seed", "3",
    "--log-every", "3", "--checkpoint-every", "4", "--progress", "plain",
    "--kl-warmup-steps", "20", "--schedule", "cosine", "--warmup-steps", "5",
    "--set", "train.tensorboard=false",
]  # fmt: skip


def vaekit(*args: str, kill_after: int | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    entry = ["-m", "vaekit"]
    if kill_after is not None:  # vaekit with the test's kill armed
        env[faults.KILL_AFTER_STEP_ENV] = str(kill_after)
        entry = [faults.__file__]
    cmd = [sys.executable, *entry, "train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in CLOCK_FIELDS} for x in lines]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--set", "optim.ema_decay=0.9"]], ids=["raw", "ema"])
def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(tmp_path, extra):
    # 1347 examples / 64 = 22 steps per epoch, 66 in all. Step 30 is mid-epoch 2: the last
    # checkpoint is step 28, so steps 29-30 (and the step record at 30) are redone. With
    # Polyak averaging the checkpoint holds the average and the raw weights: both continue.
    args = [*ARGS, *extra]
    full, broken = tmp_path / "full", tmp_path / "broken"
    assert main(["train", *args, "--out", str(full)]) == 0  # in-process, one thread as well
    killed = vaekit(*args, "--out", str(broken), kill_after=30)
    assert killed.returncode == -signal.SIGKILL
    state = json.loads((broken / "checkpoints/last/trainer.json").read_text())["loop"]
    assert (state["step"], state["epoch"], state["batch"]) == (28, 1, 6)
    assert any(r["step"] == 30 for r in metrics(broken))  # written after the checkpoint
    resumed = vaekit("--resume", str(broken))
    assert resumed.returncode == 0, resumed.stderr
    assert (broken / "model.safetensors").read_bytes() == (full / "model.safetensors").read_bytes()
    for which in ("last", "best"):
        for name in ("model.safetensors", "optimizer.safetensors", "trainer.safetensors"):
            a, b = (run / "checkpoints" / which / name for run in (broken, full))
            assert a.read_bytes() == b.read_bytes(), (which, name)
    assert metrics(broken) == metrics(full)
    assert len([r for r in metrics(full) if r["kind"] == "epoch"]) == 3
