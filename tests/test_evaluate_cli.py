"""`vaekit evaluate RUN`: quick by default, the final setting is one flag (--final), and the
time it will take is printed before the work starts."""

from __future__ import annotations

import contextlib
import importlib
import io
import json

import pytest

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
