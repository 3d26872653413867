"""One shape for every command: data is given as --data (a positional kept as its alias),
score prints its detection metrics without -o, train --help opens with examples and groups
its flags, and --help/--version answer without importing torch. ``import vaekit.evaluate``
gives the module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vaekit.cli import main


@pytest.fixture
def levels(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    x = rng.integers(0, 17, size=(12, 1, 8, 8)).astype(np.uint8)
    np.savez(path, x=x, ood=np.array([0, 1] * 6))
    return path


def test_encode_takes_data_as_a_flag_or_a_positional(tiny_run, levels, tmp_path, capsys):
    by_flag, by_position = tmp_path / "a.npy", tmp_path / "b.npy"
    assert main(["encode", str(tiny_run), "--data", str(levels), "-o", str(by_flag)]) == 0
    assert main(["encode", str(tiny_run), str(levels), "-o", str(by_position)]) == 0
    np.testing.assert_array_equal(np.load(by_flag), np.load(by_position))
    assert np.load(by_flag).shape == (12, 2)
    with pytest.raises(SystemExit):
        main(["encode", str(tiny_run), "-o", str(tmp_path / "c.npy")])
    assert "the data is required: --data DATA" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["encode", str(tiny_run), str(levels), "--data", str(tmp_path), "-o", "c.npy"])
    assert "give the data once" in capsys.readouterr().err


def test_score_prints_auroc_without_writing_a_file(tiny_run, levels, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["score", str(tiny_run), "--data", str(levels), "--num-samples", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "wrote" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]  # nothing written
    assert main([*argv, "-o", "s.csv"]) == 0
    assert "wrote s.csv" in capsys.readouterr().out and (tmp_path / "s.csv").exists()


def test_train_help_opens_with_examples_and_groups_its_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("usage: vaekit train") and len(lines[0]) <= 100
    assert lines[2] == "examples:" and lines[3].startswith("  vaekit train --config digits")
    groups = [line for line in lines if line and not line.startswith(" ") and line.endswith(":")]
    assert groups[:3] == ["examples:", "options:", "the run:"]
    assert {"[model] section:", "[data] section:", "[train] section:"} <= set(groups)


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []])
def test_no_command_answers_without_importing_torch(argv):
    code = (
        "import sys\n"
        "from vaekit.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stderr
    assert "vaekit" in proc.stdout + proc.stderr


def test_import_vaekit_evaluate_gives_the_module():
    code = (
        "import types, vaekit.evaluate, vaekit\n"
        "assert isinstance(vaekit.evaluate, types.ModuleType)\n"
        "import vaekit.evaluate as e\n"
        "assert isinstance(e, types.ModuleType) and callable(e.evaluate)\n"
        "from vaekit import evaluate\n"
        "assert evaluate is e and callable(vaekit.train) and vaekit.VAE.__name__ == 'VAE'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
