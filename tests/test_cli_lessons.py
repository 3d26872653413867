"""The lessons' command names: `vaekit lesson ae-vs-vae` and `vaekit lesson em`; their old
spellings (`vaekit compare` without run directories, `vaekit em`) run the same lesson with a
one-line note; `vaekit compare` itself is the run comparison only."""

from __future__ import annotations

import pytest

import vaekit.lessons
import vaekit.lessons.ae_vs_vae
import vaekit.lessons.em_page
from vaekit.cli import main


@pytest.fixture
def calls(monkeypatch) -> list:
    """What each lesson was called with (the lessons themselves are tested on their own)."""
    seen: list = []
    lessons = vaekit.lessons

    def record(*args, log, **kw) -> dict:  # `log` is a fresh function each time
        seen.append((*args, kw, log is print))
        return {}

    monkeypatch.setattr(lessons.ae_vs_vae, "compare", record)
    monkeypatch.setattr(lessons.ae_vs_vae, "compare_headline", lambda result: ["ae-vs-vae"])
    monkeypatch.setattr(lessons, "em_experiment", record)
    monkeypatch.setattr(lessons.em_page, "em_headline", lambda report: ["em"])
    return seen


@pytest.mark.parametrize(
    ("new", "old"),
    [
        (
            ["lesson", "ae-vs-vae", "--out", "x", "--epochs", "3", "--data", "digits"],
            ["compare", "--out", "x", "--epochs", "3", "--data", "digits"],
        ),
        (["lesson", "ae-vs-vae", "--out", "x"], ["compare", "--out", "x"]),
        (
            ["lesson", "ae-vs-vae", "--runs", "a", "b", "--out", "x", "--json"],
            ["compare", "--runs", "a", "b", "--out", "x", "--json"],
        ),
        (["lesson", "em", "--latent-dim", "2", "--json"], ["em", "--latent-dim", "2", "--json"]),
        (["--debug", "lesson", "em"], ["--debug", "em"]),
    ],
)
def test_the_old_spelling_runs_the_same_lesson_with_a_note(new, old, calls, capsys):
    assert main(new) == 0
    first = capsys.readouterr()
    assert first.err == ""
    assert main(old) == 0
    second = capsys.readouterr()
    assert len(calls) == 2 and calls[0] == calls[1]
    assert second.out == first.out
    if "em" in old:
        note = "vaekit em is now vaekit lesson em"
    else:
        note = "vaekit compare without run directories is now vaekit lesson ae-vs-vae"
    assert second.err.splitlines() == [f"vaekit: note: {note}"]


def test_the_lesson_defaults_are_the_lecture_s(calls):
    assert main(["lesson", "ae-vs-vae", "--out", "x"]) == 0
    assert main(["lesson", "em"]) == 0
    (out, ae_vs_vae, printed), (em, _) = calls
    assert str(out) == "x" and printed
    assert ae_vs_vae == {
        "data": "digits",
        "epochs": 40,
        "latent_dim": 8,
        "hidden_dims": None,
        "seed": 0,
        "runs": None,
        "num_samples": 500,
        "lr": 5e-3,
        "batch_size": 32,
        "data_dir": None,
        "overwrite": False,
    }
    assert (em["data"], em["latent_dim"], em["em_iterations"], em["vae_steps"]) == (
        "synthetic",
        3,
        500,
        3000,
    )


def test_compare_alone_asks_for_runs_and_not_for_a_lesson(calls, capsys):
    assert main(["compare"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "give at least two runs" in err[0]
    assert calls == []
    # The lesson needs its report directory: an argparse error under the lesson's name.
    with pytest.raises(SystemExit) as exc:
        main(["lesson", "ae-vs-vae"])
    assert exc.value.code == 2
    assert "vaekit lesson ae-vs-vae: error: the following arguments are required: --out" in (
        capsys.readouterr().err
    )


def test_help_lists_lesson_and_compare_shows_run_flags_only(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    assert "    lesson " in listing and "    compare " in listing
    assert "\n    em " not in listing  # the old name parses but is not offered
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-examples" in text and "vaekit lesson ae-vs-vae" in text
    for lesson_flag in ("--epochs", "--runs", "--hidden-dims", "--latent-dim"):
        assert lesson_flag not in text
