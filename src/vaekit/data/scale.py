"""Is new data on the training data's scale? A one-line :class:`DataError` saying what was
expected when it is not; never a silent guess.

* models of integer levels (``dequantize``/``binarize-dynamic`` with L levels): every value
  must be an integer in 0..L-1; floats in [0, 1] or 8-bit values for a 17-level model are
  refused. Data whose every value is 0 or 1 (binary or [0, 1]-scaled data, not levels) is
  refused too unless ``trust_scale``;
* binary models: every value 0 or 1;
* standardised models (tables, float arrays): refused unless ``trust_scale`` when a
  feature's median over the rows lies more than ``FAR_SD`` training standard deviations from
  the training mean, or (with at least ``SPREAD_MIN_ROWS`` rows) the median over features of
  (robust spread of the new data, interquartile range / 1.349, / training std; features with
  no spread in the new data skipped) is below 1/``SPREAD_RATIO`` or above
  ``SPREAD_RATIO``: the signature of data in other units. Single anomalous rows pass; the
  checks look at the typical row, so an anomaly score is not refused for being anomalous.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaekit.data.errors import DataError
from vaekit.data.transforms import Transform, integer_levels

FAR_SD = 10.0  # a feature's typical value this many training SDs away: other units
SPREAD_RATIO = 20.0  # new spread / training spread beyond 20x either way: other units
SPREAD_MIN_ROWS = 10  # the spread check needs this many rows


def check_scale(
    path: Path, x: np.ndarray, transform: Transform, support: str | None, trust_scale: bool
) -> None:
    """Refuse data that is not on the training data's scale (see the module doc)."""
    levels = integer_levels(transform)
    if levels is not None:
        lo, hi = float(x.min()), float(x.max())
        if not np.all(np.floor(x) == x):
            hint = " (they look scaled to [0, 1])" if lo >= 0.0 and hi <= 1.0 else ""
            raise DataError(
                f"{path}: expected integer levels 0..{levels - 1} like the training data; got "
                f"non-integer values in [{lo:.4g}, {hi:.4g}]{hint}"
            )
        if lo < 0 or hi > levels - 1:
            raise DataError(
                f"{path}: expected integer levels 0..{levels - 1} like the training data; got "
                f"values in [{lo:.4g}, {hi:.4g}]"
            )
        if levels > 2 and hi == 1.0 and not trust_scale and np.isin(x, (0, 1)).all():
            raise DataError(
                f"{path}: expected integer levels 0..{levels - 1} like the training data; every "
                "value is 0 or 1 (binary or [0, 1]-scaled data?); pass --trust-scale if these "
                "really are levels"
            )
        return
    if support == "binary":
        if not np.isin(x, (0, 1)).all():
            raise DataError(
                f"{path}: expected binary values 0 or 1 like the training data; got values in "
                f"[{float(x.min()):.4g}, {float(x.max()):.4g}]"
            )
        return
    if transform.kind != "standardize" or trust_scale:
        return
    mean = transform.mean.numpy().reshape(-1)
    std = transform.std.numpy().reshape(-1)
    flat = x.reshape(x.shape[0], -1)
    median = np.median(flat, axis=0)
    far = np.abs(median - mean) / std
    j = int(np.argmax(far))
    if far[j] > FAR_SD:
        raise DataError(
            f"{path}: feature {j + 1}: typical value {median[j]:.4g} lies {far[j]:.1f} training "
            f"standard deviations from the training mean {mean[j]:.4g} (std {std[j]:.4g}); "
            "expected data on the training data's scale (pass --trust-scale to use it anyway)"
        )
    if flat.shape[0] >= SPREAD_MIN_ROWS:
        # a robust spread (interquartile range / 1.349, the SD of a Gaussian), so that a few
        # anomalous rows do not count; features with no spread in the new data are skipped
        q75, q25 = np.percentile(flat, [75, 25], axis=0)
        spread = (q75 - q25) / 1.349
        informative = spread > 0
        ratio = (
            float(np.median(spread[informative] / std[informative])) if informative.any() else 1.0
        )
        if ratio < 1 / SPREAD_RATIO or ratio > SPREAD_RATIO:
            raise DataError(
                f"{path}: the features spread {ratio:.3g} times as much as the training data's "
                "(median over features); expected data on the training data's scale, in the "
                "same units (pass --trust-scale to use it anyway)"
            )
