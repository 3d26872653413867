"""Run-directory safety: what --overwrite may delete, the lock against a second writer,
Ctrl-C, time-based checkpoints, the NaN guard's checkpoint, resume messages, file modes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import faults
import vaekit
from helpers import tiny
from vaekit import rundir
from vaekit.cli import main
from vaekit.config import ConfigError
from vaekit.data import Dataset, Split
from vaekit.data.transforms import Transform
from vaekit.training import TrainingError, state_files, train
from vaekit.training.interrupt import TrainingInterrupted

torch.set_num_threads(1)
SRC = Path(__file__).resolve().parents[1] / "src"
QUIET = {"log": lambda s: None}


def env(**extra: str) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"} | extra


def records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


# --- 1. --overwrite replaces only what vaekit created -----------------------------------------


def test_overwrite_refuses_a_folder_vaekit_did_not_create(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(rundir.RunDirError, match=r"not a directory vaekit created") as info:
        train(tiny("train.epochs=1"), out=folder, overwrite=True, **QUIET)
    assert "overwrite=True" in str(info.value) and "--overwrite" not in str(info.value)
    argv = ["train", "--config", "configs/smoke.toml", "--out", str(folder), "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "refusing --overwrite: not a directory vaekit created" in err and "\n" not in err
    assert (folder / "holiday.jpg").read_bytes() == b"precious"
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]


def test_overwrite_refuses_cwd_its_parents_and_home(tmp_path, monkeypatch, capsys):
    # Even a directory with vaekit's marker is refused when it is where the user stands.
    parent = tmp_path / "projects"
    cwd = parent / "here"
    home = tmp_path / "home"
    for d in (cwd, home):
        d.mkdir(parents=True)
        rundir.write_marker(d)
        (d / "notes.txt").write_text("keep me")
    rundir.write_marker(parent)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    for out, reason in [
        (".", "it is the current directory"),
        (str(parent), "it contains the current directory"),
        (str(home), "it is the home folder"),
    ]:
        with pytest.raises(rundir.RunDirError, match=reason):
            rundir.prepare(out, overwrite=True)
    assert main(["train", "--out", ".", "--overwrite", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "vaekit: error: --out .: refusing --overwrite: it is the current directory"
    assert (cwd / "notes.txt").exists() and (home / "notes.txt").exists()


def test_overwrite_replaces_a_vaekit_run(tmp_path):
    run = tmp_path / "run"
    train(tiny("train.epochs=1"), out=run, **QUIET)
    assert rundir.is_run_dir(run)
    (run / "stale.txt").write_text("from the old run")
    with pytest.raises(rundir.RunDirError, match=r"not empty; .* overwrite=True"):
        train(tiny("train.epochs=1"), out=run, **QUIET)
    train(tiny("train.epochs=1", "train.seed=4"), out=run, overwrite=True, **QUIET)
    assert not (run / "stale.txt").exists() and rundir.is_run_dir(run)
    assert json.loads((run / "config.json").read_text())["config"]["train"]["seed"] == 4


# --- 2. one writer per run directory ------------------------------------------------------


HOLD_LOCK = """
import sys, time
from vaekit.rundir import RunLock
RunLock().acquire(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_writer_gets_the_pid_of_the_first_and_sigkill_leaves_no_stale_lock(tmp_path):
    run = tmp_path / "run"
    train(tiny("train.epochs=1"), out=run, **QUIET)
    assert (run / "report.html").exists()  # written under the training's own (re-entrant) lock
    before = sorted(p.name for p in run.rglob("*"))
    holder = subprocess.Popen(  # it locks at once: training released its lock at the end
        [sys.executable, "-c", HOLD_LOCK, str(run)], env=env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        expected = re.escape(f"in use by another vaekit process (PID {holder.pid})")
        with pytest.raises(rundir.RunLockedError, match=expected):  # --overwrite meanwhile
            train(tiny("train.epochs=1"), out=run, overwrite=True, **QUIET)
        with pytest.raises(rundir.RunLockedError, match=expected):  # a resume meanwhile
            train(resume=run, **QUIET)
        from vaekit.evaluate import save_evaluation

        with pytest.raises(rundir.RunLockedError, match=expected):  # evaluate's write
            save_evaluation(run, {"nll": 1.0})
        with pytest.raises(rundir.RunLockedError, match=expected):  # checkpoints/best -> RUN
            save_evaluation(run / "checkpoints" / "best", {"nll": 1.0})
        assert sorted(p.name for p in run.rglob("*")) == before  # nothing touched
    finally:
        holder.kill()  # SIGKILL: the operating system drops the lock with the process
        holder.wait()
        holder.stdout.close()
    with rundir.RunLock().acquire(run):
        pass
    train(tiny("train.epochs=2"), resume=run, **QUIET)


# --- 3. Ctrl-C and time-based checkpoints --------------------------------------------------

ARGS = [
    "--data", "digits", "--hidden-dims", "32", "--latent-dim", "2", "--network", "mlp",
    "--batch-size", "128", "--epochs", "2", "--device", "cpu", "--seed", "3",
    "--log-every", "2", "--checkpoint-every", "1000", "--progress", "plain",
    "--set", "train.tensorboard=false",
]  # fmt: skip


@pytest.mark.slow
def test_ctrl_c_checkpoints_says_how_to_resume_and_the_resumed_run_is_identical(tmp_path):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    assert main(["train", *ARGS, "--out", str(full)]) == 0
    cmd = [sys.executable, faults.__file__, "train", *ARGS, "--out", str(stopped)]
    # SIGINT right after step 4: it is seen at step 5's all-reduce, so step 5 finishes.
    proc = subprocess.run(
        cmd, env=env(VAEKIT_TEST_SIGINT_AFTER_STEP="4"), capture_output=True, text=True
    )
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line == f"interrupted at step 5; continue with: vaekit train --resume {stopped}"
    state = json.loads((stopped / "checkpoints/last/trainer.json").read_text())["loop"]
    assert (state["step"], state["epoch"], state["batch"]) == (5, 0, 5)
    assert main(["train", "--resume", str(stopped)]) == 0
    assert (stopped / "model.safetensors").read_bytes() == (full / "model.safetensors").read_bytes()


def test_ctrl_c_in_python_raises_a_keyboard_interrupt_after_the_checkpoint(tmp_path, monkeypatch):
    faults.signal_after_step(2, signal.SIGINT, monkeypatch)
    run, handler = tmp_path / "run", signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny("train.checkpoint_every=1000"), out=run, **QUIET)
    assert isinstance(info.value, KeyboardInterrupt) and info.value.step == 3
    assert str(info.value) == f"interrupted at step 3; continue with: vaekit.train(resume='{run}')"
    assert state_files.load_training_state(run / "checkpoints/last")[2]["loop"]["step"] == 3
    assert signal.getsignal(signal.SIGINT) is handler  # the previous handler is back


def test_checkpoints_by_time_as_well_as_by_steps(tmp_path, monkeypatch):
    written = []
    real = state_files.save_training_state

    def spy(path, *args, **kwargs):
        written.append((Path(path).name, args[3]["loop"]["step"]))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(state_files, "save_training_state", spy)
    config = tiny("train.epochs=1", "train.batch_size=20", "train.checkpoint_every=1000")
    train(config, out=tmp_path / "a", dataset=vectors(Transform()), **QUIET)
    assert [s for name, s in written if name == "last"] == [5]  # the epoch's end only
    written.clear()
    minutes = 1e-9  # a checkpoint is due after every step
    config = apply(config, f"train.checkpoint_minutes={minutes}")
    train(config, out=tmp_path / "b", dataset=vectors(Transform()), **QUIET)
    assert [s for name, s in written if name == "last"] == [1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match=r"train\.checkpoint_minutes must be > 0"):
        tiny("train.checkpoint_minutes=0")
    assert vaekit.TrainConfig().checkpoint_minutes == 5.0


def apply(config, *overrides):
    from vaekit.config import apply_overrides

    return apply_overrides(config, list(overrides))


# --- 4. the NaN guard names a checkpoint from before the divergence ---------------------------


def vectors(transform: Transform) -> Dataset:
    g = torch.Generator().manual_seed(0)
    train_x, val_x = torch.randn(100, 4, generator=g), torch.randn(20, 4, generator=g)
    return Dataset(
        name="vectors",
        shape=(4,),
        train=Split(train_x),
        val=Split(val_x),
        test=Split(val_x),
        transform=transform,
        support="real",
        default_likelihood="gaussian-learned",
    )


class DivergeAfter(Transform):
    """Identity for the first ``clean`` calls, then every value NaN (training diverged)."""

    def __init__(self, clean: int) -> None:
        self.clean, self.calls = clean, 0

    def __call__(self, x, generator=None):
        self.calls += 1
        x = x.to(torch.get_default_dtype())
        return x if self.calls <= self.clean else torch.full_like(x, float("nan"))


def test_nan_guard_names_the_checkpoint_from_before_the_divergence_and_resume_works(tmp_path):
    run = tmp_path / "r"
    # 5 batches per epoch; checkpoints every 3 steps; steps 7.. diverge (call 1 is the fixed
    # validation set), so the checkpoint due at step 9 would hold post-divergence state.
    config = tiny("train.epochs=5", "train.batch_size=20", "train.max_bad_steps=4",
                  "train.checkpoint_every=3", "optim.lr=0.01")  # fmt: skip
    with pytest.raises(TrainingError) as info:
        train(config, out=run, dataset=vectors(DivergeAfter(clean=7)), **QUIET)
    message = str(info.value)
    assert "4 consecutive steps had a non-finite loss or gradient (steps 7 to 10)" in message
    assert f"{run / 'checkpoints' / 'last'} holds the weights of step 6, from before step 7" in (
        message
    )
    assert "\n" not in message
    state = state_files.load_training_state(run / "checkpoints" / "last")[2]
    assert state["loop"]["step"] == 6 and state["loop"]["bad_steps"] == 0
    # Resume from it with a lower learning rate: it trains on, at that rate, to the end.
    lower = apply(config, "optim.lr=0.001")
    result = train(lower, resume=run, dataset=vectors(Transform()), **QUIET)
    assert result.history[-1]["epoch"] == 5
    steps = [r for r in records(run) if r["kind"] == "step" and r["step"] > 6]
    assert steps and all(r["lr"] == 0.001 for r in steps)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_nan_guard_says_so_when_no_checkpoint_came_before_the_divergence(tmp_path):
    config = tiny("train.epochs=5", "train.batch_size=20", "train.max_bad_steps=3")
    with pytest.raises(TrainingError, match=r"No checkpoint was written before step 2"):
        train(config, out=tmp_path / "r", dataset=vectors(DivergeAfter(clean=2)), **QUIET)
    assert not (tmp_path / "r" / "checkpoints" / "last").exists()


def test_a_checkpoint_never_holds_non_finite_weights(tmp_path, monkeypatch):
    from vaekit.training import Trainer

    real = Trainer._end_epoch

    def ruin_then_end(self):
        with torch.no_grad():
            next(self.model.parameters()).fill_(float("inf"))
        return real(self)

    monkeypatch.setattr(Trainer, "_end_epoch", ruin_then_end)
    run = tmp_path / "r"
    with pytest.raises(TrainingError, match=r"non-finite weights at step 11\. .*step 10"):
        train(tiny("train.checkpoint_every=5"), out=run, **QUIET)
    assert state_files.load_training_state(run / "checkpoints/last")[2]["loop"]["step"] == 10


# --- 12. resume messages that say what is wrong -----------------------------------------------


def test_resume_with_other_data_says_the_data_differs(tmp_path):
    run = tmp_path / "run"
    train(tiny("train.epochs=1"), out=run, **QUIET)
    other = tmp_path / "table.npy"
    import numpy as np

    np.save(other, np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32))
    with pytest.raises(ValueError, match=r"the data section differs .*data.name") as info:
        train(tiny("train.epochs=2", f"data.name='{other}'"), resume=run, **QUIET)
    assert "model" not in str(info.value)


def test_missing_trainer_json_is_named(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny("train.epochs=1"), out=run, **QUIET)
    (run / "checkpoints" / "last" / "trainer.json").unlink()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'checkpoints/last/trainer.json'}: missing" in err
    assert "no checkpoint to resume from" not in err


def test_resume_with_fewer_epochs_than_done_is_refused_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny("train.epochs=3"), out=run, **QUIET)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "train.epochs = 2 is less than the run has done (3 epochs, 33 steps)" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert json.loads((run / "config.json").read_text())["config"]["train"]["epochs"] == 3


def test_a_huge_seed_is_one_line(tmp_path, capsys):
    huge = str(2**70)
    with pytest.raises(SystemExit) as info:
        main(["train", "--out", str(tmp_path / "r"), "--seed", huge])
    assert info.value.code == 2
    assert f"--seed: must be at most 2**63-1, got {huge}" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--set", f"train.seed={huge}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"vaekit: error: train.seed must be at most 2**63-1, got {huge}"
    with pytest.raises(SystemExit):
        main(["evaluate", str(tmp_path), "--seed", huge])
    assert not (tmp_path / "r").exists()


# --- 13. one file mode for every file ---------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_file_of_a_run_gets_the_umask_mode(tmp_path, umask):
    previous = os.umask(umask)
    try:
        run = tmp_path / "run"
        train(tiny("train.epochs=1"), out=run, **QUIET)
        main(["evaluate", str(run), "--num-samples", "5", "--max-examples", "10", "--no-fcd"])
    finally:
        os.umask(previous)
    modes = {str(p.relative_to(run)): p.stat().st_mode & 0o777 for p in run.rglob("*")}
    files = {k: m for k, m in modes.items() if not (run / k).is_dir()}
    for name in ("model.safetensors", "metrics.jsonl", "eval.json", "report.html",
                 "checkpoints/last/trainer.json", ".vaekit-run", ".vaekit-lock"):  # fmt: skip
        assert name in files, name
    assert set(files.values()) == {0o666 & ~umask}, files


def test_out_of_space_names_the_file(tmp_path, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "run" / "eval.json"
    with pytest.raises(OSError) as info:
        rundir.atomic_write_json(target, {"nll": 1.0})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert str(target) in str(info.value) and not list((tmp_path / "run").iterdir())
    monkeypatch.undo()
    if Path("/dev/full").exists():  # a real full device for appended metrics lines
        with pytest.raises(OSError) as info:
            rundir.append_text(Path("/dev/full"), "{}\n" * 10000)
        assert info.value.errno == errno.ENOSPC and info.value.filename == "/dev/full"


def test_a_lower_lr_on_resume_applies_to_the_plateau_schedule_too():
    from vaekit.config import ScheduleConfig
    from vaekit.training.schedules import build_schedule

    config = ScheduleConfig(name="plateau", factor=0.5, patience=0)
    before = build_schedule(0.01, config, total_steps=100)
    before.epoch_end(-10.0)
    before.epoch_end(-11.0)  # an epoch without improvement: lr halves
    assert before.lr(0) == 0.005
    after = build_schedule(0.001, config, total_steps=100)  # resumed with --lr 0.001
    after.load_state_dict(json.loads(json.dumps(before.state_dict())))
    assert after.lr(0) == pytest.approx(0.0005)  # the halving is kept, at the new base rate


def test_a_leftover_is_removed_only_inside_a_run(tmp_path):
    """The temporary folders a checkpoint write names for itself are deleted only where a
    folder above them carries vaekit's marker: a same-named folder elsewhere is refused."""
    from vaekit.rundir import RunDirError, remove_leftover, write_marker

    stray = tmp_path / "mine" / ".last.tmp"
    stray.mkdir(parents=True)
    (stray / "keep.txt").write_text("a user's file")
    with pytest.raises(RunDirError, match="not inside a directory vaekit created"):
        remove_leftover(stray)
    assert (stray / "keep.txt").read_text() == "a user's file"
    run = tmp_path / "run"
    (run / "checkpoints" / ".last.tmp").mkdir(parents=True)
    write_marker(run)
    remove_leftover(run / "checkpoints" / ".last.tmp")
    assert not (run / "checkpoints" / ".last.tmp").exists()
    remove_leftover(run / "checkpoints" / "absent")  # nothing there: nothing to do


def test_a_first_checkpoint_write_leaves_a_same_named_stray_folder_whole(tmp_path):
    """The ``.NAME.old`` folder a checkpoint write removes is only the checkpoint it just
    moved there: with no earlier checkpoint, a folder of that name is not touched."""
    from helpers import tiny_model
    from vaekit.training.state_files import save_training_state

    model = tiny_model("vae")
    optimizer = torch.optim.Adam(model.parameters())
    stray = tmp_path / ".last.old"
    stray.mkdir()
    (stray / "keep.txt").write_text("a user's file")
    save_training_state(tmp_path / "last", model, optimizer, {}, {"step": 1}, None, {})
    assert (tmp_path / "last").is_dir()
    assert (stray / "keep.txt").read_text() == "a user's file"


def test_a_checkpoint_write_failing_between_its_renames_puts_the_previous_one_back(
    tmp_path, monkeypatch
):
    """The previous checkpoint is moved aside before the new one takes its name; when that
    second rename fails, the previous checkpoint is back under its own name, whole, and no
    temporary folder is left."""
    from helpers import tiny_model
    from vaekit.training import state_files

    model = tiny_model("vae")
    optimizer = torch.optim.Adam(model.parameters())
    last = tmp_path / "last"
    state_files.save_training_state(last, model, optimizer, {}, {"step": 1}, None, {})
    real_replace = os.replace

    def failing(src, dst):
        if Path(src).name == ".last.tmp":
            raise OSError(28, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(state_files.os, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        state_files.save_training_state(last, model, optimizer, {}, {"step": 2}, None, {})
    monkeypatch.undo()
    saved = json.loads((last / state_files.TRAIN_STATE_FILE).read_text())
    assert saved["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
