import os
import shutil
from pathlib import Path

import pytest
import torch

# Two cores on the reference machine: one thread per test process keeps runs predictable.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype (exact-answer tests)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One run directory for the tests that read a trained run: a digits VAE on the
    ``helpers.tiny`` settings, trained one epoch, without the end-of-training report.

    Trained once per test process and shared, so it is read-only by convention: a test that
    writes into a run (an ``eval.json``, ``onnx/``, a crafted file) takes ``tiny_run_copy``
    or copies it itself."""
    from helpers import tiny
    from vaekit.training import train

    out = tmp_path_factory.mktemp("tiny") / "run"
    train(tiny("train.epochs=1", "train.report=false"), out=out, log=lambda line: None)
    return out


@pytest.fixture
def tiny_run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of ``tiny_run`` in the test's own folder, to write into."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))
