"""The wheel that `python -m build` makes installs into a clean venv and works there: the
command line starts, and the presets shipped inside the package train by name."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the CPU build the project pins; never let pip pick another


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{argv[:3]}: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv_and_trains_a_preset(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], tmp_path, env)
    (wheel,) = dist.glob("vaekit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    presets = sorted(p.name for p in (REPO / "src" / "vaekit" / "configs").glob("*.toml"))
    assert presets and all(f"vaekit/configs/{name}" in names for name in presets)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    # The project's pip installs into the clean venv; torch first in the same resolve, pinned.
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    _run([*install, "--no-compile", TORCH, str(wheel)], tmp_path, env)

    vaekit = str(venv / "bin" / "vaekit")
    where = _run([str(python), "-c", "import vaekit; print(vaekit.__file__)"], tmp_path, env)
    assert Path(where.stdout.strip()).is_relative_to(venv)  # the wheel, not this checkout
    assert "train" in _run([vaekit, "--help"], tmp_path, env).stdout
    version = _run([vaekit, "--version"], tmp_path, env).stdout.strip()
    assert version == f"vaekit {wheel.name.split('-')[1]}"
    # No configs/ folder here: `--config digits` is the preset inside the installed package.
    argv = [vaekit, "train", "--config", "digits", "--out", "run", "--max-steps", "1"]
    trained = _run([*argv, "--no-report", "--progress", "plain"], tmp_path, env)
    assert "training done" in trained.stdout
    assert (tmp_path / "run" / "model.safetensors").is_file()
