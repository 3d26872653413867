"""A torchrun worker for the elastic test: ``vaekit`` with the test's kill hook armed only on
the first attempt (a restarted worker must run to the end, not die at the same step again)."""

import os
import sys

import torch

import faults
from vaekit.cli import main

if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
    faults.arm_from_env()
torch.set_num_threads(1)
sys.exit(main(sys.argv[1:]))
