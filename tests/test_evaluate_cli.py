"""`vaekit evaluate RUN`: quick by default, the final setting is one flag (--final), and the
time it will take is printed before the work starts."""

from __future__ import annotations

import contextlib
import importlib
import io
import json

import pytest
import torch

from helpers import tiny
from vaekit.cli.main import main
from vaekit.training import train

evaluate = importlib.import_module("vaekit.evaluate")  # the module (vaekit.evaluate: a function)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "run"
    train(tiny("train.epochs=1"), out=out, log=lambda line: None)  # with its report
    return out


def test_the_report_shows_the_numbers_of_the_eval_json_beside_it(run):
    report = (run / "report.html").read_text()
    assert "N = 300, K = 100" in report  # the end-of-training report's own evaluation
    assert "href='explore.html'" not in report  # not written yet: no link to it
    argv = ["evaluate", str(run), "--num-samples", "7", "--max-examples", "20", "--no-fcd"]
    code, out, err = _run(argv)
    assert code == 0, err
    assert f"updated {run / 'report.html'} to these numbers" in out
    saved = json.loads((run / "eval.json").read_text())
    report = (run / "report.html").read_text()
    assert "N = 20, K = 7" in report and "K = 100" not in report
    assert f"{saved['nll']:.3f}" in report


def test_the_settings_quick_by_default_final_by_one_flag():
    assert evaluate.evaluation_setting(False, None, None, new_data=False) == (100, 1000)
    assert evaluate.evaluation_setting(False, None, None, new_data=True) == (100, None)
    assert evaluate.evaluation_setting(True, None, None, new_data=False) == (5000, None)
    assert evaluate.evaluation_setting(False, 7, 9, new_data=False) == (7, 9)
    with pytest.raises(ValueError, match="--final is K = 5000 on every example"):
        evaluate.evaluation_setting(True, 7, None, new_data=False)


def test_default_evaluation_is_quick_and_prints_its_estimate_first(run, monkeypatch):
    monkeypatch.setattr(evaluate, "QUICK_MAX_EXAMPLES", 40)  # the digits test split has 300
    code, out, err = _run(["evaluate", str(run), "--no-fcd", "--progress", "plain"])
    assert code == 0, err
    saved = json.loads((run / "eval.json").read_text())
    assert (saved["num_samples"], saved["num_examples"]) == (100, 40)
    lines = err.splitlines()
    assert lines[0].startswith("estimated time for log p(x): about ")
    assert "(K = 100 importance samples on 40 of the 300 test examples" in lines[0]
    assert "the final number (--final: K = 5000 on all 300) would take about " in lines[0]
    assert "40/40 examples" in lines[-1]  # the progress comes after the estimate
    assert "test split), 40 examples, K = 100 importance samples" in out
    assert "a quick check (K = 100 on 40 examples); --final gives the number to publish" in out


def test_final_is_every_example_at_k_5000(run, monkeypatch):
    seen = {}

    def fake(model, dataset, **options):  # the setting, not 5000 draws on 300 examples
        seen.update(options)
        return real(model, dataset, **{**options, "num_samples": 2})

    real = evaluate.evaluate
    monkeypatch.setattr(evaluate, "evaluate", fake)
    code, out, err = _run(["evaluate", str(run), "--final", "--no-fcd", "--json"])
    assert code == 0, err
    assert (seen["num_samples"], seen["max_examples"]) == (5000, None)
    assert json.loads(out)["num_examples"] == 300
    code, _, err = _run(["evaluate", str(run), "--final", "--num-samples", "9"])
    assert code == 2 and "--final is K = 5000 on every example" in err


def test_device_cpu_loads_the_weights_there_and_says_so(run, monkeypatch):
    checkpoint = importlib.import_module("vaekit.checkpoint")
    seen = []
    real_load = checkpoint.load

    def spy(path, *args, map_location="cpu", **kwargs):
        seen.append(map_location)
        return real_load(path, *args, map_location=map_location, **kwargs)

    monkeypatch.setattr(checkpoint, "load", spy)
    argv = ["evaluate", str(run), "--device", "cpu", "--num-samples", "3"]
    code, out, err = _run([*argv, "--max-examples", "10", "--no-fcd", "--json"])
    assert code == 0, err
    assert seen[0] == torch.device("cpu")  # the evaluation's load (the report may load again)
    assert json.loads(out)["device"].startswith("cpu (")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("gpu", "not a device (one of auto, cpu, cuda, cuda:N or mps)"),
        ("cuda:x", "not a device (one of auto, cpu, cuda, cuda:N or mps)"),
        ("cuda:99", "CUDA device"),  # none, or fewer than 100
    ],
)
def test_a_bad_device_is_one_line_naming_the_flag_and_writes_nothing(run, name, why):
    before = (run / "eval.json").read_bytes() if (run / "eval.json").exists() else None
    code, out, err = _run(["evaluate", str(run), "--device", name, "--no-fcd"])
    assert code == 2 and out == ""
    assert err.startswith(f"vaekit: error: --device {name}: ") and why in err
    assert len(err.strip().splitlines()) == 1
    assert ((run / "eval.json").read_bytes() if (run / "eval.json").exists() else None) == before


def test_the_device_names_are_read_as_train_reads_them():
    from vaekit.support.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^device = 'tpu': not a device"):
        evaluate.evaluate_run("no-such-run", device="tpu")  # Python spelling, before any read
    with pytest.raises(ValueError, match=r"^train\.device = 'cpu0': not a device"):
        resolve_device("cpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available"):
            resolve_device("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_cuda_gives_the_cpu_number(run):
    argv = ["--num-samples", "50", "--max-examples", "40", "--no-fcd", "--json"]
    code, out, err = _run(["evaluate", str(run), "--device", "cuda", *argv])
    assert code == 0, err
    on_gpu = json.loads(out)
    assert on_gpu["device"].startswith("cuda:0 (")
    code, out, err = _run(["evaluate", str(run), "--device", "cpu", *argv])
    assert code == 0, err
    # the same draws on both devices are not guaranteed; the same estimate within its error
    assert abs(on_gpu["nll"] - json.loads(out)["nll"]) < 3 * on_gpu["nll_stderr"] + 0.5
