"""What every number vaekit reports means: one table per file it writes, each row with its
label, unit, definition and direction, read by every command that prints or draws it.

* :mod:`vaekit.metrics.table`: the metrics of ``eval.json`` (``METRICS``, ``metric(key)``);
* :mod:`vaekit.metrics.eval_file`: the evaluation settings beside them and the check of a
  file read back;
* :mod:`vaekit.metrics.scores`: the columns of ``vaekit score``'s CSV;
* :mod:`vaekit.metrics.ranking`: AUROC and AUPRC of an anomaly score.
"""

from vaekit.metrics.eval_file import SETTINGS, Setting, eval_keys, result_problem
from vaekit.metrics.table import METRICS, Metric, lookup, metric, shown_metrics, units_of

__all__ = [
    "METRICS",
    "SETTINGS",
    "Metric",
    "Setting",
    "eval_keys",
    "lookup",
    "metric",
    "result_problem",
    "shown_metrics",
    "units_of",
]
