"""The training engine in-process: run directory, early stopping, NaN guard, checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch

import vaekit
from helpers import tiny
from vaekit import checkpoint
from vaekit.data import Dataset, Split, load_dataset
from vaekit.data.transforms import Transform
from vaekit.training import TrainingError, state_files, train

torch.set_num_threads(1)


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def vector_dataset(train_x: torch.Tensor, val_x: torch.Tensor, transform=None) -> Dataset:
    return Dataset(
        name="vectors",
        shape=tuple(train_x.shape[1:]),
        train=Split(train_x),
        val=Split(val_x),
        test=Split(val_x),
        transform=transform or Transform(),
        support="real",
        default_likelihood="gaussian-learned",
    )


def test_run_directory_metrics_and_checkpoints(tmp_path):
    run = tmp_path / "run"
    result = train(tiny("train.tensorboard=true"), out=run, log=lambda s: None)
    kinds = [r["kind"] for r in records(run)]
    # 1347 training examples / 128 = 11 steps per epoch; a step record every 4 steps.
    assert kinds == ["compile", "step", "step", "epoch", "step", "step", "step", "epoch"]
    step = records(run)[1]
    for key in ("loss", "elbo", "log_px_z", "kl", "lr", "grad_norm", "examples_per_s", "beta"):
        assert math.isfinite(step[key]), key
    epoch = result.history[-1]
    assert epoch["step"] == 22 and epoch["epoch"] == 2
    for key in ("train_elbo", "val_elbo", "val_log_px_z", "val_kl", "lr", "examples_per_s"):
        assert math.isfinite(epoch[key]), key
    assert epoch["val_elbo"] == pytest.approx(epoch["val_log_px_z"] - epoch["val_kl"])
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    # The run, `last` and `best` all load with the one model loader.
    final = vaekit.load(run)
    last = vaekit.load(run / "checkpoints" / "last")
    for key, value in final.state_dict().items():
        assert torch.equal(value, last.state_dict()[key])
    best = json.loads((run / "checkpoints" / "best" / "trainer.json").read_text())
    best_epoch = max(result.history, key=lambda r: r["val_elbo"])
    assert best["loop"]["step"] == best_epoch["step"]
    assert json.loads((run / "config.json").read_text())["config"]["train"]["epochs"] == 2


def test_step_budget_schedule_and_kl_warmup_reach_the_optimiser(tmp_path):
    config = tiny(
        "train.max_steps=8",
        "train.log_every=1",
        "schedule.name=cosine",
        "schedule.warmup_steps=2",
        "objective.kl_warmup_steps=4",
        "objective.beta=2.0",
    )
    result = train(config, log=lambda s: None)
    assert [r["step"] for r in result.steps] == list(range(1, 9))
    assert [r["lr"] for r in result.steps[:2]] == [5e-4, 1e-3]
    assert result.steps[-1]["lr"] == pytest.approx(0.0)  # cosine to min_lr = 0 at step 8
    assert [r["beta"] for r in result.steps[:6]] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert result.history[-1]["step"] == 8  # the budget ends mid-epoch with an epoch record


def test_grad_clipping_bounds_the_gradient_the_optimiser_sees(monkeypatch):
    seen = []
    real_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"]]
        seen.append(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    result = train(tiny("train.max_steps=3", "train.log_every=1", "optim.grad_clip=0.5"))
    reported = [r["grad_norm"] for r in result.steps]  # the norm before clipping
    assert all(n > 0.5 for n in reported)
    assert seen == pytest.approx([0.5] * 3, rel=1e-4)
    seen.clear()
    result = train(tiny("train.max_steps=3", "train.log_every=1"))
    assert seen == pytest.approx([r["grad_norm"] for r in result.steps], rel=1e-4)


def test_early_stopping_on_validation_elbo(tmp_path):
    # Train on data near 0, validate on data at 3: learning sigma down for the training data
    # makes the validation ELBO worse every epoch, so epoch 1 stays the best.
    g = torch.Generator().manual_seed(0)
    data = vector_dataset(0.01 * torch.randn(256, 4, generator=g), torch.full((64, 4), 3.0))
    config = tiny("train.epochs=20", "train.patience=2", "optim.lr=0.01", "train.batch_size=64")
    result = train(config, out=tmp_path / "run", dataset=data, log=lambda s: None)
    assert result.stop_reason == "early-stop"
    val = [r["val_elbo"] for r in result.history]
    assert len(val) == 3 and val[1] < val[0] and val[2] < val[0]
    assert "no better validation ELBO for 2 epochs" in result.history[-1]["early_stop"]
    best = json.loads((tmp_path / "run/checkpoints/best/trainer.json").read_text())
    assert best["loop"]["step"] == result.history[0]["step"]


def test_nan_guard_skips_bad_batches_and_keeps_weights_finite(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=g)
    x[[3, 150]] = float("nan")  # two poisoned examples
    data = vector_dataset(x, torch.randn(40, 4, generator=g))
    result = train(
        tiny("train.epochs=3", "train.batch_size=20", "train.seed=5"),
        out=tmp_path / "r",
        dataset=data,
        log=lambda s: None,
    )
    # The batches holding a poisoned example, replayed from the data generator's permutations.
    gen, expected = torch.Generator().manual_seed(5), 0
    for _ in range(3):
        order = torch.randperm(200, generator=gen)
        expected += sum(bool({3, 150} & set(order[b : b + 20].tolist())) for b in range(0, 200, 20))
    skips = [r for r in records(tmp_path / "r") if r["kind"] == "skip"]
    assert 0 < len(skips) == expected == result.history[-1]["skipped_steps"]
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


class PoisonAfter(Transform):
    """Identity for the first ``clean`` batches, then all NaN (a run going bad mid-way)."""

    def __init__(self, clean: int) -> None:
        self.clean, self.calls = clean, 0

    def __call__(self, x, generator=None):
        self.calls += 1
        x = x.to(torch.get_default_dtype())
        return x if self.calls <= self.clean else torch.full_like(x, float("nan"))


def test_nan_guard_stops_after_consecutive_failures(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = vector_dataset(
        torch.randn(100, 4, generator=g),
        torch.randn(20, 4, generator=g),
        transform=PoisonAfter(clean=6),  # 1 call for the fixed val set + 5 batches
    )
    config = tiny("train.epochs=5", "train.batch_size=20", "train.max_bad_steps=3")
    with pytest.raises(TrainingError, match=r"3 consecutive steps had a non-finite loss"):
        train(config, out=tmp_path / "r", dataset=data, log=lambda s: None)
    skips = [r for r in records(tmp_path / "r") if r["kind"] == "skip"]
    assert [r["step"] for r in skips] == [6, 7, 8]
    last = vaekit.load(tmp_path / "r" / "checkpoints" / "last")  # refuses NaN weights
    assert (
        json.loads((tmp_path / "r/checkpoints/last/trainer.json").read_text())["loop"]["step"] == 5
    )
    assert all(torch.isfinite(p).all() for p in last.parameters())


def test_mixed_precision_is_refused_on_cpu():
    with pytest.raises(ValueError, match=r"train.precision = 'bf16' needs a CUDA device"):
        train(tiny("train.precision=bf16"))


def test_failed_checkpoint_write_leaves_the_previous_one_usable(tmp_path, monkeypatch):
    run = tmp_path / "run"
    result = train(tiny("train.epochs=1"), out=run, log=lambda s: None)
    last = run / "checkpoints" / "last"
    before = {p.name: p.read_bytes() for p in last.iterdir()}
    real_save = state_files.save_safetensors
    calls = []

    def failing(tensors):  # the optimiser state is written, then the trainer tensors fail
        calls.append(1)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real_save(tensors)

    monkeypatch.setattr(state_files, "save_safetensors", failing)
    optimizer = torch.optim.Adam(result.model.parameters())
    with pytest.raises(OSError, match="No space left"):
        state_files.save_training_state(last, result.model, optimizer, {}, {"step": 99}, None, {})
    assert {p.name: p.read_bytes() for p in last.iterdir()} == before
    assert not list((run / "checkpoints").glob(".last.*"))
    state_files.load_training_state(last)
    # A crash between the two renames leaves only `.last.old`: it is found and used.
    last.rename(run / "checkpoints" / ".last.old")
    assert state_files.find_checkpoint(run) == run / "checkpoints" / ".last.old"
    # A crash mid-write leaves a `.last.tmp`: it is ignored, and the next write removes it.
    (run / "checkpoints" / ".last.tmp").mkdir()
    resumed = train(tiny("train.epochs=2"), resume=run, log=lambda s: None)
    assert resumed.history[-1]["epoch"] == 2
    assert not (run / "checkpoints" / ".last.tmp").exists()


def test_tampered_optimizer_state_is_refused(tmp_path):
    run = tmp_path / "run"
    train(tiny("train.epochs=1"), out=run, log=lambda s: None)
    path = run / "checkpoints" / "last" / "optimizer.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x01  # one bit of one moment estimate
    path.write_bytes(bytes(blob))
    with pytest.raises(checkpoint.CheckpointError, match=r"optimizer\.safetensors: SHA-256"):
        train(resume=run, log=lambda s: None)


def test_resume_refuses_a_different_model(tmp_path):
    run = tmp_path / "run"
    train(tiny("train.epochs=1"), out=run, log=lambda s: None)
    with pytest.raises(ValueError, match="the model section differs"):
        train(tiny("model.latent_dim=3"), resume=run, log=lambda s: None)


def test_cli_help_and_errors(capsys, tmp_path):
    from vaekit.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--resume", "--max-steps", "--patience", "--schedule", "--kl-warmup-steps",
                 "--grad-clip", "--precision", "--compile", "--deterministic", "--progress",
                 "--checkpoint-every", "--log-every", "--set"):  # fmt: skip
        assert flag in text, flag
    assert main(["train", "--data", "digits"]) == 2
    assert "give --out RUN for a new run, or --resume RUN" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--set", "train.precision=fp64"]) == 2
    assert "train.precision must be one of 'fp32', 'bf16', 'fp16'" in capsys.readouterr().err


def test_loss_scaling_and_autocast_path_on_cpu(tmp_path, monkeypatch):
    """The fp16 code path (autocast bodies + an enabled GradScaler) exercised on the CPU with
    bf16 autocast: the GPU-only switch is the only part not run here."""
    from vaekit.training import parts as train_module  # where the Trainer looks it up
    from vaekit.training import precision

    def cpu_mixed(model, name, device):
        precision.autocast_bodies(model, "cpu", torch.bfloat16)
        return torch.amp.GradScaler("cpu", init_scale=2.0**10, enabled=True)

    monkeypatch.setattr(train_module, "setup_precision", cpu_mixed)
    run = tmp_path / "run"
    result = train(tiny("train.epochs=1"), out=run, log=lambda s: None)
    assert "forward" not in result.model.decoder.__dict__  # fp32 again after training
    assert all(math.isfinite(r["elbo"]) for r in result.steps)
    saved = json.loads((run / "checkpoints/last/trainer.json").read_text())["scaler"]
    assert saved["scale"] > 0 and "_growth_tracker" in saved
    resumed = train(tiny("train.epochs=2"), resume=run, log=lambda s: None)
    assert resumed.history[-1]["epoch"] == 2
    # Under autocast the bodies compute in bf16 but hand float32 to the log-densities.
    model = vaekit.VAE(result.model.config)
    precision.autocast_bodies(model, "cpu", torch.bfloat16)
    x = torch.rand(5, 1, 8, 8)
    assert model.encoder(x).dtype == torch.float32
    assert model.decode(torch.zeros(5, 2)).log_prob(x).dtype == torch.float32


def test_the_old_import_path_re_exports_the_training_package():
    """``vaekit.train`` (the module) keeps every name user code imported from it, and after
    ``from vaekit.train import ...`` the attribute ``vaekit.train`` is still the function."""
    import subprocess
    import sys

    code = (
        "import vaekit, vaekit.training as t\n"
        "from vaekit.train import TrainResult, Trainer, run_config\n"
        "assert vaekit.train is t.train and callable(vaekit.train)\n"
        "assert (TrainResult, Trainer, run_config) == (t.TrainResult, t.Trainer, t.run_config)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_throughput_counts_data_examples_not_importance_samples():
    """An IWAE step at K = 5 trains on the batch's examples once each: the epoch record's
    `examples` is the training split's size, whatever K is, and examples_per_s divides it."""
    for k in (1, 5):
        config = tiny(
            "objective.name='iwae'", f"objective.num_importance_samples={k}", "train.epochs=1"
        )
        result = vaekit.train(config, log=lambda line: None)
        (epoch,) = [r for r in result.history if r.get("kind", "epoch") == "epoch"]
        dataset = load_dataset("digits", None, config.data.val_fraction, config.data.split_seed)
        assert epoch["examples"] == len(dataset.train.x)
        assert epoch["examples_per_s"] > 0


def test_nan_guard_catches_a_non_finite_gradient_under_a_finite_loss(tmp_path, monkeypatch):
    # sqrt at 0 has an infinite derivative: d sqrt(0 * s) / ds = inf * 0 = NaN, while the loss
    # stays finite. The guard must skip exactly those steps (not logging steps, where the
    # cheaper non-finite check runs instead of the norm) and keep the weights finite.
    from vaekit import objectives

    real, calls = objectives.NegativeELBO.__call__, []

    def poisoned(self, model, x, y=None):
        loss, metrics = real(self, model, x, y)
        calls.append(1)
        if len(calls) in (3, 4):
            loss = loss + torch.sqrt(0.0 * next(model.parameters()).sum())
        return loss, metrics

    monkeypatch.setattr(objectives.NegativeELBO, "__call__", poisoned)
    result = train(tiny("train.max_steps=6", "train.log_every=50"), out=tmp_path / "r")
    skips = [r for r in records(tmp_path / "r") if r["kind"] == "skip"]
    assert [r["step"] for r in skips] == [3, 4]
    assert result.history[-1]["skipped_steps"] == 2
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_the_gradient_check_leaves_gradients_bitwise_unchanged():
    from vaekit.training.step import check_gradients

    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-30  # subnormal-range values too
    before = [p.grad.clone() for p in params]
    assert check_gradients(params, None, measure=False) == (True, None)
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before, strict=True))
    finite, norm = check_gradients(params, None, measure=True)
    expected = torch.linalg.vector_norm(torch.cat([b.flatten() for b in before]))
    assert finite and norm == pytest.approx(float(expected), rel=1e-6)
    params[1].grad[2] = float("inf")
    assert check_gradients(params, None, measure=False) == (False, None)
    params[1].grad[2] = float("nan")
    assert check_gradients(params, None, measure=False)[0] is False
    assert check_gradients(params, None, measure=True)[0] is False


def test_the_wall_clock_budget_ends_the_run_with_its_outputs(tmp_path):
    run = tmp_path / "run"
    # 0.0001 minutes (6 ms) are spent before the first step ends (set-up counts too).
    config = tiny("train.max_minutes=0.0001", "train.report=false")
    result = train(config, out=run, log=lambda s: None)
    assert result.stop_reason == "time"
    assert result.history[-1]["step"] == 1  # the step in flight finishes, then validation
    assert vaekit.load(run) is not None and (run / "checkpoints/last").is_dir()
    lines = []
    again = train(resume=run, log=lines.append)
    assert again.stop_reason == "finished"
    assert any("budget 0.0001 minutes" in line and "max_minutes" in line for line in lines)
    # A longer budget trains on from the checkpoint, to the step budget this time.
    longer = tiny("train.max_minutes=60", "train.max_steps=4", "train.report=false")
    result = train(longer, resume=run, log=lambda s: None)
    assert result.stop_reason == "budget" and result.history[-1]["step"] == 4


def use_fake_clock(monkeypatch) -> None:
    """A fake clock for the engine: every step takes 1 s and every validation 2 s; nothing
    else takes time."""
    import types

    from vaekit.training import clock as clock_module
    from vaekit.training import loop
    from vaekit.training.validation import Validation

    clock = [0.0]
    now = lambda: clock[0]  # noqa: E731
    fake_time = types.SimpleNamespace(perf_counter=now, monotonic=now, time=now)
    monkeypatch.setattr(clock_module, "time", fake_time)
    step, validate = loop.Trainer.step, Validation.__call__

    def timed_step(self, *args):
        clock[0] += 1.0  # before the step, whose clock check ends it
        step(self, *args)

    def timed_validation(self, *args):
        clock[0] += 2.0
        return validate(self, *args)

    monkeypatch.setattr(loop.Trainer, "step", timed_step)
    monkeypatch.setattr(Validation, "__call__", timed_validation)


def test_the_wall_clock_budget_keeps_room_for_the_closing_validation(tmp_path, monkeypatch):
    use_fake_clock(monkeypatch)
    run = tmp_path / "run"
    # 11 steps an epoch: epochs end at 11 + 2 = 13 s and 26 s; in the third, step 2 leaves
    # 2 s, the last validation's length, so the run stops there and validates until 30 s.
    # Stopping once the 30 s were spent would have gone to step 4 and validated until 32 s.
    config = tiny("train.max_minutes=0.5", "train.max_steps=1000", "train.report=false")
    result = train(config, out=run, log=lambda s: None)
    assert result.stop_reason == "time"
    assert [r["step"] for r in result.history] == [11, 22, 24]
    saved = json.loads((run / "checkpoints/last/trainer.json").read_text())["loop"]
    assert saved["train_seconds"] == 30.0 and saved["epoch_end_seconds"] == 2.0
    # Resumed, it has no room for another epoch end: nothing left to train.
    lines = []
    assert train(resume=run, log=lines.append).stop_reason == "finished"


@pytest.mark.parametrize(
    "settings,warned",
    [
        (["schedule.name=cosine", "train.max_steps=1000", "train.max_minutes=0.5"], True),
        (["schedule.name=cosine", "train.max_steps=30", "train.max_minutes=1"], False),
        (["schedule.name=constant", "train.max_steps=1000", "train.max_minutes=0.5"], False),
    ],
)
def test_a_time_budget_too_short_for_the_cosine_schedule_is_said(
    tmp_path, monkeypatch, settings, warned
):
    use_fake_clock(monkeypatch)
    lines = []
    train(tiny(*settings, "train.report=false"), out=tmp_path / "run", log=lines.append)
    warnings = [line for line in lines if "before the cosine schedule ends" in line]
    if not warned:  # 30 steps need about 36 s of the 60: the schedule ends in time
        assert warnings == []
        return
    # Said once, at the second epoch's end (26 s, 22 steps): 11 steps in 13 s, so the 978
    # steps left need 1,156 s more, about 20 minutes; the 4 s left hold 3 more steps.
    assert len(warnings) == 1
    assert "needs about 20 minutes" in warnings[0] and "near step 25" in warnings[0]
    assert "train.max_steps" in warnings[0] and "train.max_minutes 0.5" in warnings[0]


@pytest.mark.parametrize("ema", [None, 0.9])
def test_snapshots_keep_the_model_of_their_step(tmp_path, ema):
    run = tmp_path / "run"
    # A mark every 6e-8 s: each step crosses one, so every step leaves a snapshot.
    settings = ["train.max_steps=5", "train.snapshot_minutes=1e-9"]
    if ema is not None:
        settings.append(f"optim.ema_decay={ema}")
    train(tiny(*settings), out=run, log=lambda s: None)
    snapshots = sorted((run / "snapshots").iterdir())  # no temporary folders left
    assert [s.name for s in snapshots] == [f"step-{n:08d}" for n in range(1, 6)]
    seconds = []
    for path in snapshots:
        metadata = checkpoint.read_descriptor(path)["metadata"]
        assert metadata["step"] == int(path.name.removeprefix("step-"))
        seconds.append(metadata["train_seconds"])
    assert seconds == sorted(seconds) and seconds[0] > 0
    # The last snapshot is the final model (the Polyak average when one is kept).
    final, last = vaekit.load(run), vaekit.load(snapshots[-1])
    for key, value in final.state_dict().items():
        assert torch.equal(value, last.state_dict()[key]), key
    first = vaekit.load(snapshots[0]).state_dict()
    assert any(not torch.equal(v, first[k]) for k, v in final.state_dict().items())


def test_time_settings_are_checked():
    for name in ("max_minutes", "snapshot_minutes"):
        for bad in ("0", "-1"):
            with pytest.raises(ValueError, match=f"train.{name} must be > 0"):
                tiny(f"train.{name}={bad}")
        for bad in ("nan", "inf"):  # refused as every config number is
            with pytest.raises(ValueError, match=f"train.{name} must be a finite number"):
                tiny(f"train.{name}={bad}")
