"""Run against run: ``vaekit compare RUN_A RUN_B ...`` pairs runs on the same test examples
and the same random draws (:mod:`vaekit.comparison.runs`), and writes their page
(:mod:`vaekit.comparison.page`)."""

from vaekit.comparison.runs import ComparisonError, PairedDifference, RunComparison, compare_runs

__all__ = ["ComparisonError", "PairedDifference", "RunComparison", "compare_runs"]
