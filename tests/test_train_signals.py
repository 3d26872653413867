"""SIGTERM (what SLURM, Kubernetes and `timeout` send before they kill a job) stops training
as Ctrl-C does: the step finishes, checkpoints/last is written, the resume command is
printed and the process exits 143 (128 + SIGTERM); resuming continues from that step."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from vaekit.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
ARGS = [
    "--data", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--network", "mlp",
    "--batch-size", "128", "--max-steps", "100000", "--device", "cpu", "--seed", "3",
    "--log-every", "1", "--checkpoint-every", "100000", "--progress", "plain",
    "--no-report", "--set", "train.tensorboard=false",
]  # fmt: skip


def test_sigterm_checkpoints_prints_the_resume_command_exits_143_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    # Unbuffered: each step line arrives as it is printed, and in order with stderr.
    env = os.environ | {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaekit", "train", *ARGS, "--out", str(run)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    try:
        for line in proc.stdout:  # a step record is printed after the step is done
            seen.append(line)
            if line.startswith("step"):
                proc.send_signal(signal.SIGTERM)
                break
        rest, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    output = "".join(seen) + rest
    assert proc.returncode == 143, output
    assert "Traceback" not in output
    last_line = output.strip().splitlines()[-1]
    match = re.fullmatch(r"terminated \(SIGTERM\) at step (\d+); continue with: (.*)", last_line)
    assert match, last_line
    stopped_at = int(match.group(1))
    assert match.group(2) == f"vaekit train --resume {run}"
    state = json.loads((run / "checkpoints/last/trainer.json").read_text())["loop"]
    assert state["step"] == stopped_at and stopped_at < 100000

    # Resume with a budget a few steps beyond: every step once, from where it stopped.
    assert main(["train", "--resume", str(run), "--max-steps", str(stopped_at + 3)]) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    steps = [r["step"] for r in map(json.loads, lines) if r["kind"] == "step"]
    assert steps == list(range(1, stopped_at + 4))
    assert (run / "model.safetensors").exists()
