"""Strict JSON for results: no bare ``NaN`` or ``Infinity``, which strict parsers reject.

A non-finite number becomes ``null``, and the result gets a ``"null_reasons"`` table saying
why, keyed by the value's path (``nll_stderr``, ``kl_per_dim[3]``,
``aggregate_posterior.mean_norm``). A caller that knows a better reason (the standard error
of one example is undefined) passes it in ``reasons``.
"""

from __future__ import annotations

import json
import math
from typing import Any

NULL_REASONS = "null_reasons"


def _why(value: float) -> str:
    if math.isnan(value):
        return "not a number (NaN): the computation was undefined or diverged"
    return f"{'+' if value > 0 else '-'}infinity: the computation overflowed"


def finite_json(result: dict[str, Any], reasons: dict[str, str] | None = None) -> dict[str, Any]:
    """A copy of ``result`` with every non-finite float replaced by None, and the reasons under
    ``"null_reasons"`` (only when there are any). ``reasons`` maps paths to explanations that
    replace the generic one."""
    reasons = dict(reasons or {})
    found: dict[str, str] = {}

    def clean(value: Any, path: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            found[path] = reasons.get(path, _why(value))
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    out = clean(result, "")
    if found:
        out[NULL_REASONS] = {**out.get(NULL_REASONS, {}), **found}
    return out


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that refuses NaN and infinities (pass the object through
    :func:`finite_json` first)."""
    return json.dumps(obj, allow_nan=False, **kwargs)
