"""Elastic multi-node training on one machine: two torchrun agents ("nodes") on 127.0.0.1
with c10d rendezvous; one node's worker is SIGKILLed mid-epoch; the agents restart the job,
which resumes from its last checkpoint with no command typed and ends with the weights of an
uninterrupted single-process run (the autoencoder: its training is deterministic, see
test_train_ddp.py).

What kept it slow and flaky, and what the run does about each:

* A node whose agent starts more than ``last_call_timeout`` after the other's forms a first
  round of one node; the next round then has both, ranked by process id, so a node can go
  from rank 0 to rank 1. With the rendezvous store shared with the workers (torch's default)
  such a node keeps the first round's store address and sends its workers to its own old
  store while rank 0's wait in the new one: the gloo mesh never connects. The agents run with
  ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` (every round's rank 0 publishes a fresh address),
  and the last call is long: a round of two nodes closes as soon as both have joined, so the
  wait costs nothing unless a node is late.
* The log files were left open in the test process, and the suite turns the ResourceWarning
  into an error.
* Most of the time is process start-up (each agent and each worker imports torch): the data
  are a small array (no scikit-learn import, no pictures at the end), and the uninterrupted
  run trains in this process while the agents run.

The clean-up kills every process of the job (tests/torchrun_jobs.py), whether the test passes
or fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import faults
import vaekit
from torchrun_jobs import TOKEN_ENV, free_port, kill_all, processes_with
from vaekit.cli import main

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="finds its processes in /proc")

WORKER = Path(__file__).parent / "elastic_worker.py"
KILL_AFTER = 5  # mid-epoch, one step after the checkpoint at step 4


def _args(data: Path) -> list[str]:
    return [
        "--data", str(data), "--model", "ae", "--objective", "reconstruction",
        "--hidden-dims", "8", "--latent-dim", "2", "--network", "mlp", "--batch-size", "16",
        "--epochs", "1", "--device", "cpu", "--seed", "1", "--log-every", "1",
        "--checkpoint-every", "2", "--progress", "plain", "--set", "train.tensorboard=false",
        "--set", "train.report=false",
    ]  # fmt: skip


def test_a_killed_node_restarts_from_the_checkpoint_and_matches(tmp_path):
    data = tmp_path / "rows.npy"
    np.save(data, np.random.default_rng(0).normal(size=(160, 6)).astype(np.float32))
    single, run = tmp_path / "single", tmp_path / "elastic"
    torchrun = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1:2",
        "--nproc-per-node", "1", "--max-restarts", "3", "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "elastic-test",
        "--rdzv-conf", "last_call_timeout=60,join_timeout=120", "--monitor-interval", "0.2",
        str(WORKER), "train", *_args(data), "--out", str(run),
    ]  # fmt: skip
    token = uuid.uuid4().hex
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
        TOKEN_ENV: token,
    }
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    agents = []
    try:
        for i, log in enumerate(logs):
            with log.open("w") as out:  # the child holds its own copy of the descriptor
                node_env = env | ({faults.KILL_AFTER_STEP_ENV: str(KILL_AFTER)} if i == 0 else {})
                agents.append(
                    subprocess.Popen(
                        torchrun, env=node_env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
                    )
                )
        # The uninterrupted run, meanwhile.
        assert main(["train", *_args(data), "--out", str(single)]) == 0
        codes = [agent.wait(timeout=240) for agent in agents]
    finally:
        kill_all(token)
        for agent in agents:
            agent.wait()
    assert not processes_with(token)
    text = "".join(log.read_text() for log in logs)
    assert codes == [0, 0], text[-3000:]
    assert "exitcode: -9" in text  # the first attempt's worker was SIGKILLed
    assert f"torchrun restarted this job: {run}: resuming from its last checkpoint" in text
    # One restart, no more: a third round would resume a finished run.
    assert "nothing left to train" not in text, text[-3000:]
    assert json.loads((run / "config.json").read_text())["metadata"]["world_size"] == 2
    a, b = vaekit.load(single).state_dict(), vaekit.load(run).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)


def test_only_a_run_made_by_this_job_is_resumed(tmp_path, monkeypatch):
    from vaekit import rundir
    from vaekit.cli.commands import elastic_restart

    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    rundir.write_marker(run)
    assert elastic_restart(run) == "start-again"  # died before its first checkpoint
    (run / "checkpoints" / "last").mkdir(parents=True)
    (run / "checkpoints" / "last" / "trainer.json").write_text("{}")
    assert elastic_restart(run) == "resume"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-2")  # another job: the usual --out rules
    assert elastic_restart(run) is None
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    assert elastic_restart(run) is None
