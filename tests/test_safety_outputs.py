"""Bad input by category, for every command that reads a run or writes a file: output-path
safety (an output never replaces an input, another output or a run's file; --overwrite
replaces only what vaekit created), names that clash, atomic writes (a full disk leaves the
old file and no debris), special files in a run (a FIFO never hangs a command), and a run
that is still training. Two tiny runs (an image folder, a table) serve every case."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.cli import main
from vaekit.outputs import OutputPathError, output_names
from vaekit.rundir import LOCK_FILE, MARKER_FILE

TINY = ["--epochs", "2", "--hidden-dims", "16", "--latent-dim", "2", "--batch-size", "16"]
QUICK = ["--num-samples", "4"]


def stripes(rng, n):
    """[n, 8, 8] uint8 images: bright stripes on even rows, a little noise."""
    x = np.zeros((n, 8, 8))
    x[:, ::2] = 200
    return np.clip(x + rng.normal(0, 20, (n, 8, 8)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """``run`` (8x8 PNG folder) and ``trun`` (a 3-column table), new data for both
    (``imgs/``, ``new.csv``) and codes ``z.npy``; every case reads these and writes elsewhere."""
    root = tmp_path_factory.mktemp("safety")
    rng = np.random.default_rng(0)
    torch.set_num_threads(1)
    for folder, images in (("train", stripes(rng, 48)), ("imgs", stripes(rng, 4))):
        (root / folder).mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / folder / f"{i:03d}.png")
    table = rng.normal(size=(80, 3))
    (root / "t.csv").write_text("a,b,c\n" + "\n".join(",".join(map(str, r)) for r in table))
    (root / "new.csv").write_text("a,b,c\n" + "\n".join(",".join(map(str, r)) for r in table[:6]))
    np.save(root / "z.npy", rng.normal(size=(4, 2)).astype(np.float32))
    quiet = ["--no-report", "--no-tensorboard"]
    for data, out in (("train", "run"), ("t.csv", "trun")):
        argv = ["train", "--data", str(root / data), "--out", str(root / out), *TINY, *quiet]
        assert main(argv) == 0
    return root


def snapshot(*folders: Path) -> dict[str, bytes | str | None]:
    """Every entry under ``folders`` (lock files aside) -> its bytes (a link: its target; a
    folder or a FIFO: None)."""

    def content(p: Path) -> bytes | str | None:
        if p.is_symlink():
            return os.readlink(p)
        return None if p.is_dir() or p.is_fifo() else p.read_bytes()

    return {
        str(p): content(p)
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.name != LOCK_FILE
    }


def error_line(capsys) -> str:
    """The one error line on stderr (progress lines may come before it)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("vaekit: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


# --- 1. Output-path safety: per command, an output that would destroy something -------------

# (argv, the flag named in the message, what the message says); R = the fixture's folder,
# T = the test's own folder, holding X.csv (a copy of new.csv) and its link link.csv.
REFUSED = {
    "reconstruct -o its input": (
        "reconstruct {R}/trun --data {T}/X.csv -o {T}/X.csv",
        "--output",
        "is the input",
    ),
    "reconstruct -o a link to its input": (
        "reconstruct {R}/trun --data {T}/X.csv -o {T}/link.csv",
        "--output",
        "is the input",
    ),
    "evaluate -o RUN/config.json": (
        "evaluate {R}/trun --data {R}/new.csv --num-samples 4 -o {R}/trun/config.json",
        "--output",
        "a directory vaekit owns",
    ),
    "explore -o RUN/model.safetensors": (
        "explore {R}/run -o {R}/run/model.safetensors",
        "--output",
        "a directory vaekit owns",
    ),
    "sample into another run": ("sample {R}/run -o {R}/trun/s.png", "--output", "vaekit owns"),
    "traverse over a run file": (
        "traverse {R}/run -o {R}/run/checkpoints/last/x.png",
        "--output",
        "vaekit owns",
    ),
    "reconstruct into the input folder": (
        "reconstruct {R}/run --data {R}/imgs -o {R}/imgs/rec",
        "--output",
        "is inside the input",
    ),
    "interpolate -o a FIFO": ("interpolate {R}/run -o {T}/fifo.png", "--output", "is a FIFO"),
    "latent-map's manifold over the input": (
        "latent-map {R}/run -o {T}/X.png",
        "--output",
        "is also --output",
    ),
    "encode -o F --log-var F": (
        "encode {R}/trun {R}/new.csv -o {T}/z.npy --log-var {T}/./z.npy",
        "--log-var",
        "is also --output",
    ),
    "encode --sample a hard link of -o": (
        "encode {R}/trun {R}/new.csv -o {T}/old.npy --sample {T}/hard.npy",
        "--sample",
        "is also --output",
    ),
    "decode -o its input": ("decode {R}/trun {T}/X.npy -o {T}/X.npy", "--output", "is the input"),
    "score -o its input": (
        "score {R}/trun --data {T}/X.csv -o {T}/X.csv --num-samples 4",
        "--output",
        "is the input",
    ),
    "export -o RUN --overwrite": ("export {R}/run -o {R}/run --overwrite", "--out", "is the input"),
    "export -o a folder holding RUN": (
        "export {R}/run -o {R} --overwrite",
        "--out",
        "holds the input",
    ),
    "export -o a folder vaekit did not create": (
        "export {R}/run -o {T}/mine --overwrite",
        "--out",
        "not a directory vaekit created",
    ),
    "export -o another run --overwrite": (
        "export {R}/run -o {R}/trun --overwrite",
        "--out",
        "holds no export.json",
    ),
    "compare --out another run --overwrite": (
        "compare {R}/trun {R}/trun --out {R}/run --overwrite",
        "--out",
        "holds no compare.json",
    ),
    "compare --out RUN_A --overwrite": (
        "compare {R}/trun {R}/trun --out {R}/trun --overwrite",
        "--out",
        "is the input",
    ),
    "em --out inside a run": (
        "em --out {R}/trun/em --em-iterations 1 --steps 1",
        "--out",
        "vaekit owns",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_an_output_that_would_destroy_something_is_refused(case, root, tmp_path, capsys):
    template, flag, says = REFUSED[case]
    shutil.copy(root / "new.csv", tmp_path / "X.csv")
    shutil.copy(root / "z.npy", tmp_path / "X.npy")
    (tmp_path / "link.csv").symlink_to(tmp_path / "X.csv")
    (tmp_path / "old.npy").write_bytes(b"old")
    os.link(tmp_path / "old.npy", tmp_path / "hard.npy")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"precious")
    (tmp_path / "X-manifold.png").symlink_to(tmp_path / "X.png")
    argv = template.format(R=root, T=tmp_path).split()
    before = snapshot(root, tmp_path)
    capsys.readouterr()
    assert main(argv) == 2
    err = error_line(capsys)
    assert flag in err and says in err, err
    assert snapshot(root, tmp_path) == before  # nothing written, nothing replaced


def test_export_never_empties_the_current_folder_or_its_parents(
    root, tmp_path, monkeypatch, capsys
):
    # Even folders with vaekit's marker: where the user stands is never replaced.
    work = tmp_path / "project" / "here"
    work.mkdir(parents=True)
    (work / MARKER_FILE).write_text(json.dumps({"format": "vaekit-run"}))
    for folder in (work, work.parent):
        (folder / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    for out, why in ((".", "the current directory"), ("..", "contains the current directory")):
        assert main(["export", str(root / "run"), "-o", out, "--overwrite"]) == 2
        err = error_line(capsys)
        assert f"--out {out}: refusing --overwrite" in err and why in err
    assert snapshot(tmp_path) == before


def test_export_replaces_only_what_vaekit_made_and_marks_its_own(root, tmp_path, capsys):
    out = tmp_path / "onnx"
    out.mkdir()
    (out / MARKER_FILE).write_text(json.dumps({"format": "vaekit-run"}))  # an earlier export
    (out / "export.json").write_text("{}")
    (out / "stale.txt").write_text("from the last export")
    assert main(["export", str(root / "run"), "-o", str(out)]) == 2
    assert "--overwrite" in error_line(capsys)
    assert main(["export", str(root / "run"), "-o", str(out), "--overwrite"]) == 0
    assert not (out / "stale.txt").exists() and (out / "export.json").is_file()
    assert (out / MARKER_FILE).is_file()  # vaekit made it: a later --overwrite may replace it


def test_the_commands_own_file_in_a_run_is_allowed(root, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    assert main(["explore", str(run)]) == 0
    assert (run / "explore.html").is_file()
    assert main(["explore", str(run), "-o", str(run / "explore.html")]) == 0


# --- 2. Names that clash ---------------------------------------------------------------------


def test_inputs_that_would_meet_in_one_output_name_keep_their_suffix(root, tmp_path):
    images = tmp_path / "new"
    images.mkdir()
    a, b = stripes(np.random.default_rng(3), 2)
    b[:] = 255 - b  # unlike a: the two reconstructions differ
    Image.fromarray(a).save(images / "a.png")
    Image.fromarray(b).save(images / "a.jpg", quality=100)
    Image.fromarray(a).save(images / "c.jpg", quality=100)
    rec = tmp_path / "rec"
    assert main(["reconstruct", str(root / "run"), "--data", str(images), "-o", str(rec)]) == 0
    assert sorted(p.name for p in rec.iterdir()) == ["a.png", "a_jpg.png", "c.png"]
    assert (rec / "a.png").read_bytes() != (rec / "a_jpg.png").read_bytes()


def test_names_that_still_meet_are_refused_naming_both():
    assert output_names(["x/a.JPG", "x/a.png", "b.jpeg"]) == ["x/a_JPG.png", "x/a.png", "b.png"]
    with pytest.raises(OutputPathError, match=r"a_jpg.png and a.jpg: both would be written"):
        output_names(["a_jpg.png", "a.jpg", "a.png"])


# --- 3. Atomic writes: a full disk leaves the old file whole and no debris --------------------

# (argv, the file it writes); the file holds b"old" before the command runs.
WRITES = {
    "sample": ("sample {R}/run -o {T}/out.png", "out.png"),
    "reconstruct": ("reconstruct {R}/run -o {T}/out.png", "out.png"),
    "interpolate": ("interpolate {R}/run -o {T}/out.png", "out.png"),
    "traverse": ("traverse {R}/run -o {T}/out.png", "out.png"),
    "latent-map": ("latent-map {R}/run -o {T}/out.png", "out.png"),
    "encode": ("encode {R}/trun {R}/new.csv -o {T}/out.npy", "out.npy"),
    "decode": ("decode {R}/trun {R}/z.npy -o {T}/out.csv", "out.csv"),
    "reconstruct --data": ("reconstruct {R}/trun --data {R}/new.csv -o {T}/out.csv", "out.csv"),
    "evaluate --data": (
        "evaluate {R}/trun --data {R}/new.csv --num-samples 4 -o {T}/out.json",
        "out.json",
    ),
    "score": ("score {R}/trun --data {R}/new.csv --num-samples 4 -o {T}/out.csv", "out.csv"),
    "explore": ("explore {R}/run -o {T}/out.html", "out.html"),
    "compare": (
        "compare {R}/trun {R}/trun --num-samples 4 --out {T}/cmp --overwrite",
        "cmp/compare.json",
    ),
}


def no_space(_fd):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("command", sorted(WRITES))
def test_a_full_disk_leaves_the_old_file_and_names_the_new(
    command, root, tmp_path, monkeypatch, capsys
):
    template, name = WRITES[command]
    target = tmp_path / name
    target.parent.mkdir(exist_ok=True)
    if target.parent != tmp_path:  # a folder vaekit made earlier, which it may replace
        (target.parent / MARKER_FILE).write_text(json.dumps({"format": "vaekit-run"}))
        (target.parent / "compare.json").write_text("{}")
    target.write_bytes(b"old")
    before = snapshot(root, tmp_path)
    monkeypatch.setattr(os, "fsync", no_space)  # every atomic write flushes before its rename
    capsys.readouterr()
    assert main(template.format(R=root, T=tmp_path).split()) == 2
    err = error_line(capsys)
    assert "No space left on device" in err and str(tmp_path) in err, err
    assert snapshot(root, tmp_path) == before  # the old file whole; no temporary, no 0 bytes


def test_a_full_disk_leaves_no_half_written_image_folder(root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "fsync", no_space)
    rec = tmp_path / "rec"
    argv = ["reconstruct", str(root / "run"), "--data", str(root / "imgs"), "-o", str(rec)]
    assert main(argv) == 2
    err = error_line(capsys)
    assert f"{rec}/000.png" in err and "No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_report_keeps_the_old_report(root, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    assert main(["evaluate", str(run), *QUICK, "--max-examples", "4", "--no-fcd"]) == 0
    (run / "report.html").write_bytes(b"old")
    before = snapshot(tmp_path)
    monkeypatch.setattr(os, "fsync", no_space)
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    err = error_line(capsys)
    assert "No space left on device" in err and str(run) in err
    assert snapshot(tmp_path) == before


# --- 4. Special files in a run: refused at once, never a hang ---------------------------------

READERS = {
    "evaluate": "evaluate {run} --num-samples 4",
    "sample": "sample {run} -o {T}/s.png",
    "reconstruct": "reconstruct {run} -o {T}/r.png",
    "traverse": "traverse {run} -o {T}/t.png",
    "encode": "encode {run} {R}/imgs -o {T}/z.npy",
    "decode": "decode {run} {R}/z.npy -o {T}/d.npy",
    "score": "score {run} --data {R}/imgs -o {T}/s.csv --num-samples 4",
    "report": "report {run}",
    "explore": "explore {run} -o {T}/e.html",
    "export": "export {run} -o {T}/onnx",
    "compare": "compare {run} {run} --out {T}/cmp",
}


@pytest.fixture
def alarm():
    """A command blocked for 30 s fails the test (instead of hanging the suite)."""

    def hung(*_):
        raise TimeoutError("the command blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# Every reader meets a FIFO; a device (the reader is shared) is tried on two.
SPECIAL = [(c, "fifo") for c in sorted(READERS)] + [("evaluate", "device"), ("sample", "device")]


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
@pytest.mark.parametrize(("command", "special"), SPECIAL)
def test_a_special_file_in_a_run_is_refused_not_waited_on(
    command, special, name, root, tmp_path, capsys, alarm
):
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / name).unlink()
    if special == "fifo":
        os.mkfifo(run / name)
    else:
        (run / name).symlink_to(os.devnull)
    argv = READERS[command].format(run=run, R=root, T=tmp_path).split()
    capsys.readouterr()
    assert main(argv) == 2
    err = error_line(capsys)
    kind = "a FIFO" if special == "fifo" else "a character device"
    assert f"{run / name}: is {kind}, not a regular file" in err, err


def test_a_weights_file_named_outside_the_run_is_refused(root, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    descriptor = json.loads((run / "config.json").read_text())
    descriptor["weights"]["file"] = f"../{root.name}/trun/model.safetensors"
    (run / "config.json").write_text(json.dumps(descriptor))
    assert main(["sample", str(run), "-o", str(tmp_path / "s.png")]) == 2
    # refused when config.json is validated, before any file is opened
    assert "weights.file must be a file name inside the model directory" in error_line(capsys)


# --- 5. A run that is still training ----------------------------------------------------------


def test_evaluating_a_run_in_training_names_the_process_and_the_checkpoint(root, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / "model.safetensors").unlink()  # training writes the final weights at its end
    assert main(["evaluate", str(run), *QUICK]) == 2
    assert "missing weights file" in error_line(capsys)  # nobody trains it: just missing
    fd = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT)  # the trainer's lock, held
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        for argv in (["evaluate", str(run), *QUICK], ["sample", str(run), "-o", "x.png"]):
            assert main(argv) == 2
            err = error_line(capsys)
            assert f"{run}: the run is training (vaekit process PID 4242)" in err
            assert f"a checkpoint can be evaluated meanwhile: {run}/checkpoints/last" in err
        assert main(["evaluate", str(run / "checkpoints" / "last"), *QUICK, "--no-fcd"]) == 0
    finally:
        os.close(fd)


def test_a_staged_folder_replaces_only_a_folder_vaekit_made(tmp_path):
    """The deletion itself is guarded, whoever calls: a user's folder outside any run is
    never moved aside and deleted, even with replace=True."""
    from vaekit.outputs import staged_dir
    from vaekit.rundir import RunDirError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    refused = pytest.raises(RunDirError, match="not a folder vaekit created")
    with refused, staged_dir(mine, replace=True) as staging:
        (staging / "x").write_text("new")
    assert (mine / "notes.txt").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temporary folder left
