"""The one metrics table: eval.json's keys and the table's entries are the same set, and the
CLI print and the HTML report take their labels and units from it."""

from __future__ import annotations

import contextlib
import html
import io
import json
import math

import pytest

from helpers import model_names, tiny_model
from vaekit import feature_net
from vaekit.cli import main
from vaekit.data import load_dataset
from vaekit.evaluate import evaluate
from vaekit.metrics import METRICS, SETTINGS, Metric, eval_keys, metric, shown_metrics, units_of
from vaekit.metrics.scores import SCORE_COLUMNS, SHARE_COLUMN, score_column
from vaekit.report.html import render_report
from vaekit.support.jsonsafe import finite_json


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A digits VAE trained a few steps (full-covariance posterior, so every KL key is live),
    then ``vaekit evaluate`` with the FCD: (run directory, eval.json, the printed lines)."""
    root = tmp_path_factory.mktemp("metrics")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAEKIT_CACHE_DIR", str(root / "cache"))
        mp.setitem(feature_net.RECIPE, "steps", 60)  # a quick classifier for the tests
        run = root / "run"
        args = ["train", "--data", "digits", "--max-steps", "5", "--hidden-dims", "16"]
        args += ["--latent-dim", "3", "--posterior", "full", "--batch-size", "64"]
        assert main([*args, "--out", str(run)]) == 0
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["evaluate", str(run), "--num-samples", "5", "--max-examples", "60"])
        assert code == 0
    result = json.loads((run / "eval.json").read_text())
    return run, result, out.getvalue().splitlines()


def test_every_key_evaluate_writes_has_an_entry_and_vice_versa(evaluated):
    _, result, _ = evaluated
    table = {m.key for m in METRICS} | {s.key for s in SETTINGS}
    written = eval_keys(result)
    assert written - table == set(), "keys eval.json holds that the table does not define"
    # Some keys belong to other models (a VQ-VAE's codebook, a conditional model's label):
    # evaluate every registered model once, untrained, and take the union.
    dataset = load_dataset("digits", None, 0.1, 0)
    for name in model_names():
        model = tiny_model(name, likelihood="gaussian-learned")
        other = evaluate(model, dataset, num_samples=3, max_examples=20, fcd=False)
        assert eval_keys(other) - table == set(), f"{name}: keys the table does not define"
        written |= eval_keys(other)
    # One example has no standard error: eval.json then writes null and says why.
    single = evaluate(tiny_model("vae"), dataset, num_samples=3, max_examples=1, fcd=False)
    written |= eval_keys(finite_json(single))
    assert table - written == set(), "table entries evaluate never writes"
    assert len(table) == len(METRICS) + len(SETTINGS)  # no key defined twice
    # eval.json describes itself from the same table
    assert result["units"] == units_of(result)
    assert result["units"]["nll"].startswith(metric("nll").unit)


def test_every_metric_is_fully_described():
    for entry in METRICS:
        assert entry.label and entry.unit and entry.definition.endswith("."), entry.key
        assert entry.higher_is_better in (True, False, None)
        if entry.shown:
            assert entry.brief, f"{entry.key}: the CLI prints a brief definition"
    assert metric("nll").higher_is_better is False and metric("elbo").higher_is_better is True
    assert metric("nll").unit == "nats per example"
    assert metric("bits_per_dim").unit == "bits per dimension"


def test_cli_print_takes_labels_and_units_from_the_table(evaluated):
    _, result, lines = evaluated
    rows = [
        line
        for line in lines[1:]
        if not line.strip().startswith(
            (
                "saved to",
                "updated",
                "a quick check",
                "space:",
                "model space:",
                "bits/dim basis:",
                "note:",
                "beside ",  # the nll beside its references (vaekit.evaluation.references)
            )
        )
    ]
    assert any(line.strip().startswith("space: ") for line in lines)  # the space is named
    assert any(line.strip().startswith("beside nll ") for line in lines)
    shown = list(shown_metrics(result))
    assert len(rows) == len(shown) >= 9
    for line, (entry, value) in zip(rows, shown, strict=True):
        assert line.strip().startswith(entry.label), line
        assert f"{value}  {entry.unit} ({entry.brief})" in line
    assert any(" ± " in row for row in rows if row.strip().startswith("nll"))


def test_report_table_takes_labels_and_units_from_the_table(evaluated):
    _, result, _ = evaluated
    page = render_report("t", {"a": 1}, result, [])
    table = page[page.index("id='evaluation'") : page.index("</table>")]
    for entry, value in shown_metrics(result):
        row = (
            f"<tr><td>{html.escape(entry.label)}</td><td class='value'>{html.escape(value)}"
            f"</td><td>{html.escape(entry.unit)}</td>"
        )
        assert row in table, entry.key
    assert table.count("<tr>") == 1 + len(list(shown_metrics(result)))


def test_value_text():
    result = {
        "nll": 81.23456,
        "nll_stderr": 0.5,
        "active_units": 3,
        "kl_per_dim": [0.1, 0.0, 0.2, 0.3],
        "kl_correlation": 0.0,
        "elbo": math.nan,
    }
    assert metric("nll").value_text(result) == "81.235 ± 0.500"
    assert metric("active_units").value_text(result) == "3 of 4"
    assert metric("elbo").value_text(result) == "n/a"
    keys = [entry.key for entry, _ in shown_metrics(result)]
    assert keys == ["nll", "elbo", "active_units"]  # a zero correlation KL is left out
    assert Metric("x", "x", "u", "d.").direction == "neither higher nor lower is better"


def test_the_score_columns_say_which_are_anomaly_scores():
    ranked = {c.name for c in SCORE_COLUMNS if c.ranked}
    assert ranked == {
        "nll_nats",
        "neg_elbo_nats",
        "recon_sq_error",
        "complexity_corrected_bits",
        "typicality_nats",
    }
    # A mixed-type table's per-column shares explain a score; they are not ranked themselves.
    assert score_column("share_height_nats") is SHARE_COLUMN and not SHARE_COLUMN.ranked
    assert score_column("nll_nats").meaning.endswith(f"{metric('nll').unit} (importance-sampled)")
