"""Bad input, category "crafted state": every field vaekit reads back from a run directory
(config.json's sections, its data section, the weights entry, eval.json, metrics.jsonl) is
checked before it is used. A tampered or crafted file is one line naming the file and the
field, exit 2, with nothing written; never a traceback, never a wrong number printed. And
the category "special files": a FIFO in place of a run file is refused, never opened."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

import vaekit
from vaekit.cli import main
from vaekit.report.curves import read_metrics


def crafted(tiny_run: Path, tmp_path: Path, change) -> Path:
    """A copy of ``run`` whose config.json was changed by ``change(descriptor)`` (a function
    returning text replaces the file's text)."""
    copy = tmp_path / "crafted"
    shutil.copytree(tiny_run, copy)
    descriptor = json.loads((copy / "config.json").read_text())
    text = change(descriptor)
    (copy / "config.json").write_text(text if isinstance(text, str) else json.dumps(descriptor))
    return copy


def _set(path: str, value):
    """A change that sets the dotted ``path`` of config.json to ``value``."""

    def change(descriptor):
        *parents, last = path.split(".")
        node = descriptor
        for part in parents:
            node = node[part]
        node[last] = value

    return change


CRAFTED = [
    ("data", [1, 2], "data must be an object or null, got [1, 2]"),
    ("config", 5, "config must be an object or null, got 5"),
    ("config.data", [1], "config: data must be a table"),
    ("weights", "x", "weights must be an object, got 'x'"),
    ("weights.file", "../../etc/passwd", "weights.file must be a file name inside the model"),
    ("weights.sha256", 7, "weights.sha256 must be a SHA-256"),
    ("data.shape", [100000, 100000, 100000], "data.shape must be the model's data_shape"),
    ("data.shape", "abc", "data.shape must be a list of 1 to 8 positive integers"),
    ("data.num_levels", 0, "data.num_levels must be an integer >= 2"),
    ("data.transform.levels", 0, "data.transform.levels must be an integer >= 2"),
    ("data.transform.levels", "17", "data.transform.levels must be an integer >= 2"),
    ("data.transform", {"kind": "rot13"}, "data.transform.kind must be one of"),
    ("data.transform", {"kind": "scale", "divisor": -1}, "data.transform.divisor must be a"),
    (
        "data.transform",
        {"kind": "standardize", "mean": [[[0.0] * 8] * 8], "std": [[[0.0] * 8] * 8]},
        "data.transform.std must hold positive finite numbers",
    ),
    (
        "data.transform",
        {"kind": "standardize", "mean": "abc", "std": [1.0]},
        "data.transform.mean must be an array of numbers",
    ),
    ("data.support", "imaginary", "data.support must be one of binary, unit-interval, real"),
    ("data.columns", ["a", "b"], "data.columns must be 64 names"),
    ("metadata.train_seconds", "abc", "metadata.train_seconds must be a finite number >= 0"),
    ("model", [], "model must be an object, got []"),
    ("model.data_shape", "abc", "model.data_shape must be a list of 1 to 8 positive integers"),
]


@pytest.mark.parametrize("path, value, message", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_a_crafted_config_json_field_is_named(tiny_run, tmp_path, capsys, path, value, message):
    copy = crafted(tiny_run, tmp_path, _set(path, value))
    np.save(tmp_path / "z.npy", np.zeros((3, 2), dtype=np.float32))
    out = tmp_path / "out.npy"
    assert main(["decode", str(copy), str(tmp_path / "z.npy"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vaekit: error: {copy / 'config.json'}: {message}")
    assert "\n" not in err
    assert not out.exists()
    with pytest.raises(vaekit.CheckpointError, match=message.replace("[", r"\[").split("(")[0]):
        vaekit.load(copy)


def test_json_nested_too_deeply_is_named(tiny_run, tmp_path, capsys):
    copy = crafted(tiny_run, tmp_path, lambda d: "[" * 100_000 + "]" * 100_000)
    assert main(["sample", str(copy), "-o", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"vaekit: error: {copy / 'config.json'}: corrupt JSON (nested too deeply)"


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "{run}", "-o", "{tmp}/s.png"],
        ["evaluate", "{run}", "--num-samples", "2", "--max-examples", "4", "--no-fcd"],
        ["report", "{run}"],
        ["reconstruct", "{run}", "-o", "{tmp}/r.png"],
        ["explore", "{run}", "-o", "{tmp}/e.html"],
        ["compare", "{run}", "{run}", "--out", "{tmp}/cmp"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_command_reads_config_json_through_the_checks(tiny_run, tmp_path, capsys, argv):
    copy = crafted(tiny_run, tmp_path, _set("data.transform.levels", 0))
    argv = [a.replace("{run}", str(copy)).replace("{tmp}", str(tmp_path)) for a in argv]
    before = sorted(p.name for p in copy.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("config.json: data.transform.levels must be an integer >= 2, got 0")
    assert sorted(p.name for p in copy.iterdir()) == before  # nothing written
    assert not any(p.name != "crafted" for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("nll", "abc", "nll must be a finite number or null, got 'abc'"),
        ("kl_per_dim", [0.1, "x"], "kl_per_dim must be a finite number or null"),
        ("num_examples", "ten", "num_examples must be an integer, got 'ten'"),
        ("split", 3, "split must be a string, got 3"),
    ],
)
def test_report_refuses_a_tampered_eval_json(tiny_run, tmp_path, capsys, key, value, message):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    assert main(["evaluate", str(copy), "--num-samples", "2", "--no-fcd", "--json"]) == 0
    stored = json.loads((copy / "eval.json").read_text())
    stored[key] = value
    (copy / "eval.json").write_text(json.dumps(stored))
    capsys.readouterr()
    assert main(["report", str(copy)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().startswith(f"vaekit: error: {copy / 'eval.json'}: {message}")
    assert "abc nats" not in captured.out
    assert not (copy / "report.html").exists()


def test_eval_json_nested_too_deeply_is_named(tiny_run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    (copy / "eval.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err
    assert f"{copy / 'eval.json'}: corrupt JSON (nested too deeply)" in err


def test_metrics_jsonl_with_a_crafted_axis_is_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "epoch", "epoch": 1, "train_elbo": -5}\n{"epoch": "two"}\n')
    with pytest.raises(ValueError, match=r"line 2: epoch must be a number, got 'two'"):
        read_metrics(path)
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match=r"line 1 is not JSON \(nested too deeply\)"):
        read_metrics(path)


def test_an_untouched_run_passes_every_check(tiny_run):
    """The checks accept what vaekit writes (models of every kind are covered by the
    checkpoint round-trip tests, which read through the same checks)."""
    assert vaekit.load(tiny_run).data_info["shape"] == [1, 8, 8]


# --- special files in place of run files ------------------------------------------------------


@pytest.fixture
def deadline():
    """Fail instead of hanging: opening a FIFO for reading blocks until a writer comes."""

    def expired(signum, frame):
        raise TimeoutError("blocked on a special file")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "name, argv",
    [
        ("model.safetensors", ["sample", "{run}", "-o", "{tmp}/s.png"]),
        ("config.json", ["sample", "{run}", "-o", "{tmp}/s.png"]),
        ("eval.json", ["report", "{run}"]),
        ("checkpoints/last/trainer.json", ["train", "--resume", "{run}", "--epochs", "2"]),
    ],
)
def test_a_fifo_in_place_of_a_run_file_is_refused(tiny_run, tmp_path, capsys, deadline, name, argv):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    (copy / name).unlink(missing_ok=True)
    os.mkfifo(copy / name)
    argv = [a.replace("{run}", str(copy)).replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"{copy / name}: is a FIFO, not a regular file" in err


def test_a_fifo_in_place_of_metrics_jsonl_is_refused(tmp_path, deadline):
    os.mkfifo(tmp_path / "metrics.jsonl")
    with pytest.raises(OSError, match="not a regular file"):
        read_metrics(tmp_path / "metrics.jsonl")
