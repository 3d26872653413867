"""Elastic multi-node training on one machine: two torchrun agents ("nodes") on 127.0.0.1
with c10d rendezvous; one node's worker is SIGKILLed mid-epoch; the agents restart the job,
which resumes from its last checkpoint with no command typed and ends with the weights of an
uninterrupted single-process run (the autoencoder: its training is deterministic, see
test_train_ddp.py).

The end-to-end run is marked ``benchmark`` (run it with ``pytest -m benchmark
tests/test_train_elastic.py``; 75-90 s on a loaded 2-core machine). It used to fail now and
then in the second rendezvous round, whose gloo mesh never connected. The likely cause, read
in torch's dynamic rendezvous: with the rendezvous store shared with the workers (torch's
default), a node keeps the first round's store address and rebuilds it only when it becomes
rank 0, so a node that is rank 0 in one round and rank 1 in the next sends its workers to its
own old store while rank 0's wait in the new one. The agents here run with
``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``: every round's rank 0 publishes a fresh address, and
both nodes' logs show the same master port in each round. The decision each worker makes is
tested below on its own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import faults
import vaekit
from vaekit.cli import main

WORKER = Path(__file__).parent / "elastic_worker.py"
ARGS = [
    "--data", "digits", "--model", "ae", "--objective", "reconstruction", "--hidden-dims", "32",
    "--latent-dim", "2", "--network", "mlp", "--batch-size", "64", "--epochs", "1",
    "--device", "cpu", "--seed", "1", "--log-every", "5", "--checkpoint-every", "4",
    "--progress", "plain", "--set", "train.tensorboard=false", "--set", "train.report=false",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.benchmark
def test_a_killed_node_restarts_from_the_checkpoint_and_matches(tmp_path):
    single, run = tmp_path / "single", tmp_path / "elastic"
    assert main(["train", *ARGS, "--out", str(single)]) == 0
    torchrun = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1:2",
        "--nproc-per-node", "1", "--max-restarts", "3", "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "elastic-test",
        "--rdzv-conf", "last_call_timeout=3", "--monitor-interval", "0.5",
        str(WORKER), "train", *ARGS, "--out", str(run),
    ]  # fmt: skip
    # Each round's rank 0 publishes a fresh store address: with the rendezvous store shared
    # (torch's default), a node that was rank 0 in the first round and is rank 1 in the next
    # keeps pointing its workers at its own old store, and the gloo mesh never connects.
    env = os.environ | {"OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    agents = [
        subprocess.Popen(
            torchrun,
            env=env | ({faults.KILL_AFTER_STEP_ENV: "14"} if i == 0 else {}),
            stdout=logs[i].open("w"),
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,  # agent and workers in one group, killed together
        )
        for i in range(2)
    ]
    try:
        codes = [agent.wait(timeout=300) for agent in agents]
    finally:
        for agent in agents:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(agent.pid, signal.SIGKILL)
    text = "".join(log.read_text() for log in logs)
    assert codes == [0, 0], text[-3000:]
    assert "exitcode: -9" in text  # the first attempt's worker was SIGKILLed
    assert f"torchrun restarted this job: {run}: resuming from its last checkpoint" in text
    assert json.loads((run / "config.json").read_text())["metadata"]["world_size"] == 2
    a, b = vaekit.load(single).state_dict(), vaekit.load(run).state_dict()
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
