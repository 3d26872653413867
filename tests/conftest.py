import os

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
