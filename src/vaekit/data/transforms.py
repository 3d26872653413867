"""From stored values to the numbers a model sees, and back to a description for config.json.

A transform maps a stored batch ``[B, *shape]`` (often uint8) to float model inputs. Some are
stochastic (a fresh dequantisation or binarisation draw every time an example is used) and
take a ``torch.Generator``. ``to_dict``/``transform_from_dict`` store them in a model's
config.json so new data is preprocessed exactly as the training data was.
"""

from __future__ import annotations

from typing import Any

import torch


class Transform:
    """Base: identity on float data. Subclasses override ``__call__`` and ``to_dict``."""

    kind = "identity"
    stochastic = False

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x.to(torch.get_default_dtype())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}


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
            from vaekit.data.datasets import DataError

            column = int((~finite).reshape(z.shape[0], -1).any(0).nonzero()[0, 0]) + 1
            raise DataError(
                f"column {column}: values are not representable in "
                f"{str(dtype).removeprefix('torch.')} after standardising (not finite, or "
                "far outside the training split's range)"
            )
        return z

    def to_dict(self):
        return {"kind": self.kind, "mean": self.mean.tolist(), "std": self.std.tolist()}


TRANSFORMS: dict[str, type[Transform]] = {
    t.kind: t for t in (Transform, Scale, Dequantize, DynamicBinarize, Standardize)
}


def transform_from_dict(data: dict[str, Any]) -> Transform:
    """Rebuild a transform saved with ``to_dict``."""
    params = dict(data)
    kind = params.pop("kind", None)
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown data transform {kind!r}; known: {sorted(TRANSFORMS)}")
    return TRANSFORMS[kind](**params)
