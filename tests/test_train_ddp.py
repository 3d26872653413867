"""DistributedDataParallel on CPU (gloo, 2 processes) matches single-process training.

Same seed, same global batch: every rank draws the same permutation and the same
dequantisation noise for the whole global batch and keeps its rows, and each rank's mean loss
is weighted by its share of the batch, so the averaged gradient is the single-process one up
to float rounding (the last batch of 3 examples is split 2/1 and still matches). The model is
the AE with the reconstruction objective: a VAE's reparameterisation noise is drawn per rank
(independent streams), so a VAE agrees with single-process training in distribution only.
The DDP run is killed mid-epoch and resumed under DDP, so resume is covered too. On a
WebDataset pack, where each rank reads only its rows of each global batch, the same holds.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import faults
import vaekit
from torchrun_jobs import free_port
from vaekit.cli import main

torch.set_num_threads(1)

ARGS = [
    "--data", "digits", "--model", "ae", "--objective", "reconstruction", "--hidden-dims", "32",
    "--latent-dim", "2", "--network", "mlp", "--batch-size", "64", "--epochs", "1",
    "--device", "cpu", "--seed", "1", "--log-every", "5", "--checkpoint-every", "4",
    "--progress", "plain", "--set", "train.tensorboard=false",
]  # fmt: skip


def _worker(rank: int, world: int, port: int, argv: list[str], kill_after: int | None) -> None:
    torch.set_num_threads(1)
    os.environ |= {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world)}
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    if kill_after is not None:
        faults.signal_after_step(kill_after, signal.SIGKILL)
    if main(argv) != 0:
        raise SystemExit(f"rank {rank}: vaekit train failed")


def _launch(argv: list[str], kill_after: int | None = None) -> None:
    mp.spawn(_worker, args=(2, free_port(), argv, kill_after), nprocs=2, join=True)


def _epochs(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if json.loads(x)["kind"] == "epoch"]


@pytest.mark.slow
@pytest.mark.parametrize("data", ["in memory", "webdataset pack"])
def test_two_gloo_ranks_match_single_process_and_resume(tmp_path, data):
    args = list(ARGS)
    if data == "webdataset pack":  # streamed: each rank reads only its rows of each batch
        from vaekit.data import load_dataset
        from vaekit.data.pack import write_pack

        pack = tmp_path / "pack"
        write_pack(load_dataset("digits"), pack, "digits", 0.02, str, layout="webdataset")
        args[1] = str(pack)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main(["train", *args, "--out", str(single)]) == 0
    if data == "in memory":  # resuming a streamed split mid-epoch: tests/test_data_rank_share.py
        with pytest.raises(mp.ProcessExitedException):  # both ranks SIGKILL themselves at 14
            _launch(["train", *args, "--out", str(ddp)], kill_after=14)
        assert not (ddp / "model.safetensors").exists()
        state = json.loads((ddp / "checkpoints/last/trainer.json").read_text())
        assert state["world_size"] == 2 and state["loop"]["step"] == 12
        _launch(["train", "--resume", str(ddp)])
    else:
        _launch(["train", *args, "--out", str(ddp)])

    a, b = vaekit.load(single).state_dict(), vaekit.load(ddp).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    for x, y in zip(_epochs(single), _epochs(ddp), strict=True):
        assert x["step"] == y["step"]
        for key in ("train_loss", "train_grad_norm", "val_log_px_z"):
            assert y[key] == pytest.approx(x[key], rel=1e-5), key
    # Only rank 0 wrote: one metrics file with no duplicated records.
    steps = [json.loads(x)["step"] for x in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))
