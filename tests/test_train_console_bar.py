"""On a terminal the lines before training (budget, space, legend) are printed before the
progress bar opens, each on a line of its own, never onto the bar's line."""

from __future__ import annotations

import contextlib
import io

import torch

from helpers import tiny
from vaekit.training import train

torch.set_num_threads(1)


def test_the_legend_is_printed_before_the_bar_opens_not_onto_its_line():
    screen = io.StringIO()  # stdout and stderr on one terminal, as a person sees them
    with contextlib.redirect_stdout(screen), contextlib.redirect_stderr(screen):
        train(tiny("train.epochs=1", 'train.progress="bar"', "train.report=false"))
    lines = screen.getvalue().split("\n")
    first = [i for i, line in enumerate(lines) if "step/s" in line or "it/s" in line]
    announced = [i for i, line in enumerate(lines) if line.startswith(("legend:", "elbo, "))]
    assert len(announced) == 2 and first, screen.getvalue()[:2000]
    assert max(announced) < min(first)  # both above the bar, whole lines
    assert all("\r" not in lines[i] and "%|" not in lines[i] for i in announced)
