"""From stored values to the numbers a model sees, and back to a description for config.json.

A transform maps a stored batch ``[B, *shape]`` (often uint8) to float model inputs. Some are
stochastic (a fresh dequantisation or binarisation draw every time an example is used) and
take a ``torch.Generator``. ``to_dict``/``transform_from_dict`` store them in a model's
config.json so new data is preprocessed exactly as the training data was.

Back to the user's units. Each transform states

* ``log_data_scale(shape)``: the change-of-variables term c (nats per example) such that
  log p(v) = log p(x) - c for the data v as given, where x = transform(v) is what the model
  sees: sum_d log std_d for standardisation, D log(levels) for dequantisation (the density
  of v + u on [0, levels)^D, whose value bounds the discrete log P(v) from below: Theis et
  al. 2016), D log(divisor) for scaling, 0 for binary data;
* ``space``: a few words naming the model's space, for labels;
* ``to_data(x)``: a model-space mean E[x|z] mapped back to the data's units.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vaekit.data.errors import DataError


class Transform:
    """Base: identity on float data. Subclasses override ``__call__`` and ``to_dict``."""

    kind = "identity"
    stochastic = False

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x.to(torch.get_default_dtype())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    space = "the data as given"

    def data_space(self) -> str:
        """A one-line label: the space of likelihood figures after ``log_data_scale``."""
        return "the data as given"

    def log_data_scale(self, shape: tuple[int, ...]) -> float:
        """c in log p(v) = log p(x) - c, nats per example (see the module doc)."""
        return 0.0

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        """A model-space mean ``[B, *shape]`` in the data's units."""
        return x


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


class Scale(Transform):
    """x = v / divisor: grey levels to [0, 1] without noise (a Gaussian then models the
    grey levels as if continuous; prefer :class:`Dequantize` for a true density)."""

    kind = "scale"

    def __init__(self, divisor: float) -> None:
        self.divisor = float(divisor)

    def __call__(self, x, generator=None):
        return x.to(torch.get_default_dtype()) / self.divisor

    def to_dict(self):
        return {"kind": self.kind, "divisor": self.divisor}

    space = "scaled (v / divisor)"

    def data_space(self):
        return f"the data as given (model-space figures + D log {self.divisor:g})"

    def log_data_scale(self, shape):
        return _numel(shape) * math.log(self.divisor)

    def to_data(self, x):
        return x * self.divisor


class Dequantize(Transform):
    """Uniform dequantisation: integer levels v in {0..levels-1} -> x = (v + u) / levels,
    u ~ U[0, 1) drawn afresh each time. x has a density on [0, 1]^D, and
    log P(v) >= E_u[log p(x)] - D log(levels) (Theis et al. 2016), which is what turns a
    continuous model's nats into bits per dimension of the discrete data."""

    kind = "dequantize"
    stochastic = True

    def __init__(self, levels: int) -> None:
        self.levels = int(levels)

    def __call__(self, x, generator=None):
        v = x.to(torch.get_default_dtype())
        u = torch.rand(v.shape, generator=generator, dtype=v.dtype, device=v.device)
        return (v + u) / self.levels

    def to_dict(self):
        return {"kind": self.kind, "levels": self.levels}

    space = "dequantised and scaled to [0, 1]"

    def data_space(self):
        return (
            f"the data as given: integer levels 0..{self.levels - 1} (dequantisation bound: "
            f"model-space figures + D log {self.levels})"
        )

    def log_data_scale(self, shape):
        return _numel(shape) * math.log(self.levels)

    def to_data(self, x):
        """Levels: E[v] = levels * E[x] - 1/2 (E[u] = 1/2), clamped to [0, levels - 1]
        because a Gaussian decoder's mean can leave [0, 1] slightly."""
        return (x * self.levels - 0.5).clamp(0.0, self.levels - 1.0)


class Levels(Transform):
    """x = v / (levels - 1): integer levels v in {0..levels-1} on the grid {0, 1/(levels-1),
    ..., 1}, with no noise. What a discrete likelihood (the discretised logistic) models: its
    log-probability is that of the levels themselves, so bits per dimension need no
    dequantisation bound."""

    kind = "levels"

    def __init__(self, levels: int) -> None:
        self.levels = int(levels)

    def __call__(self, x, generator=None):
        return x.to(torch.get_default_dtype()) / (self.levels - 1)

    def to_dict(self):
        return {"kind": self.kind, "levels": self.levels}

    space = "integer levels scaled to the grid {0, 1/(levels-1), ..., 1}"

    def data_space(self):
        # A probability mass of the levels needs no change of variables (log_data_scale 0).
        return f"the data as given: integer levels 0..{self.levels - 1} (a probability mass)"

    def to_data(self, x):
        return (x * (self.levels - 1)).clamp(0.0, self.levels - 1.0)


class DynamicBinarize(Transform):
    """x ~ Bernoulli(v / (levels - 1)), a fresh draw every time an example is used
    (Burda et al. 2015's protocol for binarised MNIST)."""

    kind = "binarize-dynamic"
    stochastic = True

    def __init__(self, levels: int = 256) -> None:
        self.levels = int(levels)

    def __call__(self, x, generator=None):
        p = x.to(torch.get_default_dtype()) / (self.levels - 1)
        u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
        return (u < p).to(p.dtype)

    def to_dict(self):
        return {"kind": self.kind, "levels": self.levels}

    space = "binarised draws {0, 1}"

    def data_space(self):
        return "binarised draws of the data {0, 1}, as the model was trained on"

    def to_data(self, x):
        """Levels: the Bernoulli mean p = v / (levels - 1) back on the stored scale."""
        return x * (self.levels - 1)


class Standardize(Transform):
    """x = (v - mean) / std per feature, with statistics computed on the training split.

    Computed in float64 and only then cast to the training dtype: a value like 1e200 does
    not fit in float32, but its standardised value does. A standardised value that still does
    not fit (data far outside the training split's range) is an error naming the column.
    """

    kind = "standardize"

    def __init__(self, mean: list[float] | torch.Tensor, std: list[float] | torch.Tensor) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.std = torch.as_tensor(std, dtype=torch.float64)

    def __call__(self, x, generator=None):
        dtype = torch.get_default_dtype()
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        z = ((x.to(torch.float64) - mean) / std).to(dtype)
        finite = torch.isfinite(z)
        if not bool(finite.all()):
            column = int((~finite).reshape(z.shape[0], -1).any(0).nonzero()[0, 0]) + 1
            raise DataError(
                f"column {column}: values are not representable in "
                f"{str(dtype).removeprefix('torch.')} after standardising (not finite, or "
                "far outside the training split's range)"
            )
        return z

    def to_dict(self):
        return {"kind": self.kind, "mean": self.mean.tolist(), "std": self.std.tolist()}

    space = "standardised (v - mean) / std"

    def data_space(self):
        return "the data as given, in its own units (standardised-space figures + sum log std)"

    def log_data_scale(self, shape):
        """sum_d log std_d: the Jacobian of v = mean + std * x (one std per feature)."""
        return float(self.std.log().sum() * (_numel(shape) / self.std.numel()))

    def to_data(self, x):
        mean, std = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        return x * std + mean


class TableEncoding(Transform):
    """A mixed-type table's rows, already encoded by ``vaekit.data.tables`` (features and the
    observed mask): the model sees them as they are, and the tabular likelihood's log p is
    of the observed cells in the table's own units, so there is no change of variables left."""

    kind = "table"
    space = "the observed cells of the table, in its own units (nats per row)"

    def data_space(self):
        return (
            "the observed cells of the table as given, in its own units: nats per row, missing "
            "cells marginalised (densities for real and positive columns, probabilities for the "
            "others)"
        )


TRANSFORMS: dict[str, type[Transform]] = {
    t.kind: t
    for t in (Transform, Scale, Dequantize, Levels, DynamicBinarize, Standardize, TableEncoding)
}


def transform_from_dict(data: dict[str, Any]) -> Transform:
    """Rebuild a transform saved with ``to_dict``."""
    params = dict(data)
    kind = params.pop("kind", None)
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown data transform {kind!r}; known: {sorted(TRANSFORMS)}")
    return TRANSFORMS[kind](**params)


def run_transform(data_info: dict[str, Any] | None) -> Transform:
    """A run's saved preprocessing, from the ``data`` section of its config.json (identity
    when the run recorded none)."""
    return transform_from_dict((data_info or {}).get("transform", {"kind": "identity"}))


def integer_levels(transform: Transform) -> int | None:
    """L, where the model's data are integer levels 0..L-1 (dequantised, level or
    binarised data); None for continuous data."""
    return getattr(transform, "levels", None) if transform.kind != "identity" else None
