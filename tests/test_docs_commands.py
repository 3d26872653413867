"""Every command the README and the documentation site show is checked: each `vaekit ...`
line parses with vaekit's own parser (and a `train` line's config is valid), each Python
block compiles, and the quickstarts and the README's Python lines run as written on small
data (`train` lines with a few steps only)."""

from __future__ import annotations

import argparse
import ast
import contextlib
import io

import numpy as np
import pytest
from PIL import Image

from docs_commands import REPO, code_blocks, doc_files, vaekit_commands
from vaekit.cli import main
from vaekit.cli.flags import config_overrides
from vaekit.cli.parser import build_parser
from vaekit.config import Config, apply_overrides, load_config


def _parse(argv: list[str]) -> argparse.Namespace | None:
    """The parsed arguments, None for --help/--version (which exit 0); a parse error raises
    AssertionError with argparse's message."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            raise AssertionError(err.getvalue().strip().splitlines()[-1]) from None
        return None


def _check_train_config(args: argparse.Namespace) -> None:
    """What `vaekit train` builds before training: the preset or file, then flags and --set."""
    if args.resume is not None:
        return
    config = load_config(args.config) if args.config else Config()
    flagged = config_overrides(args, args.config_flags)
    apply_overrides(config, [*flagged, *args.set], given_as=flagged)


def test_every_vaekit_command_in_the_docs_parses(monkeypatch):
    monkeypatch.chdir(REPO)  # `--config configs/x.toml` paths are relative to the checkout
    checked, failures = 0, []
    for path in doc_files():
        for block in code_blocks(path):
            for argv in vaekit_commands(block):
                where = f"{path.relative_to(REPO)}:{block.line}: vaekit {' '.join(argv)}"
                try:
                    args = _parse(argv)
                    if args is not None and args.command == "train":
                        _check_train_config(args)
                except Exception as exc:  # every failure listed at once, with its line
                    failures.append(f"{where}\n    {exc}")
                checked += 1
    assert failures == []
    assert checked >= 80  # the guide shows well over a hundred; an extractor bug shows here


def test_the_checker_refuses_a_wrong_command():
    """The parse check is not vacuous: a misspelt flag and an unknown --set field fail."""
    with pytest.raises(AssertionError, match="did you mean --epochs"):
        _parse(["train", "--out", "x", "--epocs", "3"])
    with pytest.raises(Exception, match="no_such"):
        _check_train_config(_parse(["train", "--out", "x", "--set", "train.no_such=1"]))


def test_every_python_block_in_the_docs_compiles():
    for path in doc_files():
        for block in code_blocks(path):
            if block.language == "python":
                ast.parse(block.text, filename=f"{path.name}:{block.line}")


def _block(path, marker: str) -> str:
    found = [b for b in code_blocks(path) if b.marker == marker]
    assert len(found) == 1, f"{path.name} has no block marked <!-- {marker} -->"
    return found[0]


def _run_block(block, extra_train: list[str]) -> list[str]:
    """Run a block's vaekit lines in order as vaekit's main; train lines get extra flags."""
    ran = []
    for argv in vaekit_commands(block):
        if argv[0] == "train":
            argv = [*argv, *extra_train]
        assert main(argv) == 0, argv
        ran.append(argv[0])
    return ran


def _table(path, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    height = rng.normal(170, 10, rows)
    weight = 0.9 * (height - 100) + rng.normal(0, 5, rows)
    age = rng.integers(18, 80, rows)
    lines = [
        "height,weight,age",
        *(f"{h:.1f},{w:.1f},{a}" for h, w, a in zip(height, weight, age, strict=True)),
    ]
    path.write_text("\n".join(lines) + "\n")


def _images(folder, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (20, 24), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{i}.png")


QUICKSTART = REPO / "docs" / "guide" / "quickstart.md"
FEW_STEPS = ["--max-steps", "3", "--no-report"]


def test_the_table_quickstart_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _table(tmp_path / "people.csv", 60, seed=0)
    _table(tmp_path / "new_people.csv", 12, seed=1)
    ran = _run_block(_block(QUICKSTART, "quickstart: table"), FEW_STEPS)
    assert ran == ["train", "evaluate", "encode", "score"]
    header = (tmp_path / "codes.csv").read_text().splitlines()[0]
    assert header.startswith("row,z1,")  # each code names its source row
    assert len((tmp_path / "scores.csv").read_text().splitlines()) == 12 + 1


def test_the_image_quickstart_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "photos", 10, seed=0)
    _images(tmp_path / "new_photos", 2, seed=1)
    ran = _run_block(_block(QUICKSTART, "quickstart: images"), FEW_STEPS)
    assert ran == ["train", "sample", "reconstruct", "explore"]
    recon = sorted(
        p.relative_to(tmp_path / "recon").as_posix() for p in (tmp_path / "recon").rglob("*")
    )
    assert [p for p in recon if p.endswith(".png")] == ["a/0.png", "a/1.png", "b/0.png", "b/1.png"]
    assert (tmp_path / "samples.png").is_file()
    assert (tmp_path / "runs" / "photos" / "explore.html").is_file()


def test_the_digits_quickstart_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = _run_block(_block(QUICKSTART, "quickstart: digits"), FEW_STEPS)
    assert ran == ["train", "evaluate", "report", "sample", "explore"]
    run = tmp_path / "runs" / "digits"
    assert {"eval.json", "report.html", "explore.html"} <= {p.name for p in run.iterdir()}


def test_the_readme_quickstarts_are_the_guide_s(tmp_path):
    """The README's three quickstarts are lines of the guide's, which the tests above run."""
    guide = {tuple(a) for b in code_blocks(QUICKSTART) for a in vaekit_commands(b)}
    readme = REPO / "README.md"
    start = readme.read_text().index("## Quickstarts")
    shown = [
        tuple(argv)
        for block in code_blocks(readme)
        if block.text in readme.read_text()[start:]
        for argv in vaekit_commands(block)
    ]
    assert len(shown) >= 9
    assert [argv for argv in shown if argv not in guide] == []


def test_the_readme_python_lines_run(tmp_path, monkeypatch, capsys):
    """The README's ten lines of Python API, run as written (the smoke preset: seconds)."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Python API")
    block = next(b for b in code_blocks(REPO / "README.md") if b.language == "python")
    assert block.text in readme[start:]
    lines = [line for line in block.text.splitlines() if line.strip()]
    assert len(lines) <= 12
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block.text, "README.md", "exec"), scope)
    assert scope["terms"].elbo.shape == (16,) and scope["log_px"].shape == (16,)
    assert tuple(scope["images"].shape) == (64, 1, 8, 8)
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert np.isfinite(float(printed))
