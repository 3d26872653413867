"""What a person sees: progress, one line format, the closing summary, quiet broken pipes,
presets by name, and errors in the caller's language (flags or Python keywords)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import vaekit
from helpers import tiny
from vaekit.cli.main import EXIT_BROKEN_PIPE, main
from vaekit.config import ConfigError, apply_overrides, find_config, load_config, preset_names

REPO = Path(__file__).resolve().parents[1]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch smoke run, trained from a folder with no configs/ in it (so the preset
    comes from inside the package); returns (run directory, what train printed)."""
    where = tmp_path_factory.mktemp("elsewhere")
    previous = os.getcwd()
    os.chdir(where)
    try:
        argv = ["train", "--config", "smoke", "--out", "run", "--epochs", "2"]
        argv += ["--log-every", "4", "--no-report", "--progress", "plain"]
        code, out, err = _run(argv)
    finally:
        os.chdir(previous)
    assert code == 0, err
    return where / "run", out


def test_preset_by_name_from_anywhere(trained, tmp_path, monkeypatch):
    run, _ = trained
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["model"]["hidden_dims"] == [32]  # smoke.toml's, not the built-in [512, 256]
    monkeypatch.chdir(tmp_path)
    assert load_config("digits") == load_config(REPO / "configs" / "digits.toml")
    assert load_config("digits.toml").model.latent_dim == 8
    with pytest.raises(ConfigError, match=r"not a preset .*did you mean 'digits'"):
        load_config("digts")


def test_configs_folder_is_the_packaged_one_not_a_copy():
    """configs/ at the top of the repository is the package's folder itself (a link), so the
    README's `configs/x.toml` paths and `--config x` can never disagree."""
    packaged = Path(vaekit.__file__).parent / "configs"
    assert os.path.samefile(REPO / "configs", packaged)
    assert sorted(p.stem for p in packaged.glob("*.toml")) == preset_names()
    assert find_config("smoke").read_text() == (REPO / "configs" / "smoke.toml").read_text()


def test_step_and_epoch_lines_share_one_format_and_the_summary_lists_every_file(trained):
    run, out = trained
    lines = out.splitlines()
    assert sum("higher is better" in line for line in lines) == 1  # the ELBO's sign, once
    legend = next(line for line in lines if line.startswith("legend:"))
    assert "nats per example" in legend
    records = [line for line in lines if line.startswith("step ")]
    steps = [line for line in records if " end " not in line]
    epochs = [line for line in records if " end " in line]
    assert len(steps) >= 2 and len(epochs) == 2
    pattern = r"step +\d+/22  epoch +\d+ (end|   )  train: loss \S+ elbo \S+ log_px_z \S+ kl \S+"
    for line in records:
        assert re.match(pattern, line), line
        assert "examples/s" in line and "| lr " in line
    assert all("| val: elbo " in line for line in epochs)
    # The summary: the last epoch record's validation ELBO, the wall time, every file.
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in metrics if r["kind"] == "epoch"][-1]["val_elbo"]
    assert f"final validation ELBO {final:.3f} nats per example (epoch 2;" in out
    assert re.search(r"wall time \d+\.\d s", out)
    listed = out[out.index("files written in") :]
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "samples.png"):
        assert f"    {name}\n" in listed, name
    assert "checkpoints/last/ (5 files)" in listed and "checkpoints/best/ (5 files)" in listed
    assert not (run / "report.html").exists() and "report.html" not in listed  # --no-report


def test_resume_of_a_finished_run_trains_nothing_and_rewrites_nothing(trained):
    run, _ = trained

    def snapshot() -> dict[str, tuple[bytes, int]]:
        return {
            str(p.relative_to(run)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".vaekit-lock"  # the lock is taken to look, not written
        }

    before = snapshot()
    # The budget already spent (a smaller one is refused: tests/test_rundir_safety.py).
    for extra in ([], ["--epochs", "2"]):
        code, out, _ = _run(["train", "--resume", str(run), "--progress", "plain", *extra])
        assert code == 0
        assert "nothing left to train" in out and "step 22" in out
        assert "--epochs or --max-steps" in out
        assert snapshot() == before


def test_the_end_of_training_report_is_announced(tmp_path):
    argv = ["train", "--config", "smoke", "--out", str(tmp_path / "r"), "--max-steps", "2"]
    code, out, err = _run([*argv, "--progress", "plain"])
    assert code == 0, err
    announced = out.index("writing the report")
    assert "--no-report skips it" in out[announced:].splitlines()[0]
    assert out.index("files written in") > announced
    assert "    report.html\n" in out and "    eval.json\n" in out
    assert (tmp_path / "r" / "report.html").is_file()


@pytest.mark.parametrize("mode", ["bar", "plain"])
def test_evaluate_shows_the_importance_sampling_progress(trained, mode):
    run, _ = trained
    argv = ["evaluate", str(run), "--num-samples", "4", "--max-examples", "40"]
    argv += ["--batch-size", "10", "--no-fcd", "--progress", mode]
    code, out, err = _run(argv)
    assert code == 0
    assert "log p(x), K = 4" in err and "K = 4:" not in out  # progress on stderr only
    if mode == "bar":  # tqdm: count, elapsed<remaining (the ETA), rate
        assert re.search(r"40/40 \[\d\d:\d\d<\d\d:\d\d", err), err
    else:
        assert "40/40 examples" in err and "s left" in err and "[" not in err


def test_evaluate_draws_no_bar_into_a_file_by_default(trained, tmp_path):
    run, _ = trained
    argv = ["evaluate", str(run), "--num-samples", "2", "--max-examples", "20", "--no-fcd"]
    code, _, err = _run(argv)  # stderr is a StringIO here: no terminal
    assert code == 0 and "<" not in err and "20/20 examples" in err


def test_sample_creates_the_output_folder(trained, tmp_path):
    run, _ = trained
    target = tmp_path / "new" / "deeper" / "x.png"
    code, out, _ = _run(["sample", str(run), "-n", "4", "-o", str(target)])
    assert code == 0 and target.is_file() and str(target) in out


# Commands that print while they write: their words after the command, and the file each
# must finish ({run}: the trained run).
CLOSED_PIPE = {
    "evaluate": ("{run} --num-samples 2 --max-examples 20 --no-fcd", "{run}/eval.json"),
    "report": ("{run} --num-samples 2 --max-examples 20", "{run}/report.html"),
    "train": (
        "--config smoke --out {run}-piped --overwrite --max-steps 6 --log-every 1 --no-report",
        "{run}-piped/model.safetensors",
    ),
}


@pytest.mark.parametrize("command", list(CLOSED_PIPE))
@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_closed_pipe_exits_quietly(trained, command, unbuffered):
    """`vaekit evaluate RUN | head -1`, `vaekit report RUN | head -3`, `vaekit train ... |
    head`: the reader leaves; no traceback, no error, exit 128 + SIGPIPE, and the file still
    written whole, whether stdout is buffered (the error shows at the last flush) or not
    (PYTHONUNBUFFERED=1: at the first print, before the file is written)."""
    run, _ = trained
    words, written = CLOSED_PIPE[command]
    flags = [word.format(run=run) for word in words.split()]
    written = Path(written.format(run=run))
    written.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    argv = [sys.executable, "-m", "vaekit", command, *flags]
    try:
        proc = subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, text=True, env=env)
    finally:
        os.close(write_end)
    assert proc.returncode == EXIT_BROKEN_PIPE == 141, proc.stderr
    assert "vaekit: error" not in proc.stderr and "Traceback" not in proc.stderr
    assert "BrokenPipe" not in proc.stderr and "Broken pipe" not in proc.stderr
    if command == "evaluate":
        assert json.loads(written.read_text())["num_examples"] == 20
    elif command == "report":
        assert written.read_text().rstrip().endswith("</html>")
    else:  # every step trained and logged, then the weights written
        records = (written.parent / "metrics.jsonl").read_text().splitlines()
        steps = [r["step"] for r in map(json.loads, records) if r["kind"] == "step"]
        assert steps == list(range(1, 7))
        vaekit.load(written.parent)  # and the weights read back whole


def test_api_errors_name_keywords_and_cli_errors_name_flags(tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "file").write_text("x")
    with pytest.raises(ValueError) as api:
        vaekit.train(tiny(), out=out)
    assert "overwrite=True" in str(api.value) and "--" not in str(api.value)
    code, _, err = _run(["train", "--config", "smoke", "--out", str(out)])
    assert code == 2 and "with --overwrite" in err and f"--out {out}:" in err
    with pytest.raises(ValueError) as api:  # a config the data cannot honour
        vaekit.train(tiny("model.likelihood=bernoulli"))
    assert "model.likelihood = 'bernoulli' needs binary data" in str(api.value)
    for call in (
        lambda: vaekit.load_dataset("no-such-set"),
        lambda: apply_overrides(tiny(), ["optim.lrr=1"]),
        lambda: vaekit.train(tiny("objective.name=reconstruction")),
        lambda: vaekit.load_dataset("digits", image_size=[8, 8]),
    ):
        with pytest.raises(ValueError) as api:
            call()
        assert "--" not in str(api.value), str(api.value)


def test_a_notebook_gets_a_tqdm_auto_bar(monkeypatch):
    """In Jupyter stderr is no terminal, yet a person watches: auto mode draws tqdm.auto's
    bar (the notebook widget where ipywidgets is installed)."""
    import tqdm.auto

    from vaekit.support.progress import in_notebook

    made = []

    class Recording(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    assert not in_notebook()
    vaekit.train(tiny("train.progress=auto", "train.max_steps=2"), log=lambda _: None)
    assert made == []  # no terminal, no notebook: no bar
    shell = type("ZMQInteractiveShell", (), {})()  # what a Jupyter kernel's IPython runs
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert in_notebook()
    vaekit.train(tiny("train.progress=auto", "train.max_steps=2"), log=lambda _: None)
    assert len(made) == 1 and made[0]["total"] == 2 and made[0]["unit"] == "step"


@pytest.mark.slow
def test_a_real_jupyter_kernel_shows_the_notebook_bar():
    """The same through a real kernel, where the Jupyter packages are installed (they are not
    vaekit's dependencies): the training cell's output holds a widget, tqdm's notebook bar."""
    pytest.importorskip("ipywidgets")
    pytest.importorskip("ipykernel")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    code = (
        "import vaekit\n"
        "config = vaekit.config.apply_overrides(vaekit.load_config('smoke'), "
        "['train.max_steps=2', 'train.report=false'])\n"
        "result = vaekit.train(config)"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
