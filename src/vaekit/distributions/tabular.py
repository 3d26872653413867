"""The likelihood of a mixed-type table: one head per column type, summed over observed cells.

A row arrives encoded (``vaekit.data.tables``) as ``x [B, F + C]``: F feature numbers, then
the observed mask of the C columns (1 observed, 0 missing). The features of a column are

* real: (v - loc) / scale; positive: (log v - loc) / scale (loc, scale: the column's);
* zero-inflated: two, [v == 0] and (log v - loc) / scale for v > 0 (0 for a zero);
* count, poisson: log1p(v) (v recovered exactly as round(expm1(.)));
* ordinal: (k - loc) / scale, k the index of the cell among the column's sorted levels;
* binary: 0 or 1 (the index of the cell among the column's two categories);
* categorical: one-hot over the column's K categories;

and a missing cell's features are 0. The decoder outputs, per column, a mean (real,
positive), the logit of P(v = 0) and a mean (zero-inflated), a log-mean (count, poisson), a
location eta (ordinal), a logit (binary) or K logits (categorical); the Gaussian scales
(zero-inflated: of log v), the negative binomial's dispersions and an ordinal's K - 1 cut
points are learned per column.

log p(x|z) is the sum over the observed cells, in nats per row of the table as given:

* real: log N(v; loc + scale mu, (scale sigma)^2) = log N(x; mu, sigma^2) - log scale (the
  change of variables from the standardised x back to v);
* positive: the log-normal density of v, log N(log v; loc + scale mu, (scale sigma)^2) - log v;
* zero-inflated, with pi = P(v = 0) = sigmoid(logit): log pi for a cell of exactly 0, and
  log(1 - pi) + the positive column's log-normal density above for a cell v > 0;
* count: the negative binomial with mean m and total count r, probability of success
  m / (m + r) (var = m + m^2 / r); poisson: Poisson(m);
* ordinal: the ordered logit P(v = level k) = sigmoid(c_k - eta) - sigmoid(c_{k-1} - eta)
  (``vaekit.distributions.ordinal``, in log space);
* binary: Bernoulli; categorical: the softmax of the logits.

With ``rank`` R >= 1 the real and positive columns (G of them) are one joint Gaussian on
their standardised values instead of independent ones: N(mu, W W^T + diag d) as in
``vaekit.distributions.lowrank``, the decoder writing d's pre-activation (G) and W (G R) after
the F features; the Jacobians above are unchanged, missing cells are marginalised out, and a
cell's own share (``cell_log_probs``) is its conditional log p(x_j | the observed real cells
before it), so the shares still sum to the row's log p. A zero-inflated column keeps its
own independent head and is not part of the joint Gaussian (its zeros have no Gaussian value).

The discrete columns are exact probabilities, the continuous ones densities, so the sum is a
density with respect to Lebesgue measure on the continuous cells times counting measure on
the discrete ones. A zero-inflated cell's reference measure is mixed: counting measure at 0
plus Lebesgue measure on (0, inf), so a 0 counts a probability and a v > 0 a density per
unit of v; a row's log p is a density with respect to the product of these measures.

With ``missing`` "self-masking" a row's log p also holds log p(s|x), the probability of its
missing mask (``vaekit.distributions.missingness``); "at-random" (the default) leaves it out.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from vaekit.distributions.functional import LOG_2PI
from vaekit.distributions.lowrank import (
    LowRankParameters,
    chain_log_probs,
    check_rank,
    condition,
    masked_log_prob,
)
from vaekit.distributions.missingness import filled_values, missingness_model
from vaekit.distributions.ordinal import OrdinalCuts
from vaekit.settings import TableColumn

# A log-mean outside this range (a rate above e^30 ~ 1e13) only arises from a diverging
# decoder; clamping keeps exp() finite in float32 so one bad row cannot make the loss inf.
MAX_LOG_RATE = 30.0
# Adam moves a weight by about the learning rate a step, whatever its gradient, so a
# per-column scalar stored as it is (a scale's pre-activation, a log total count) would need
# thousands of steps to travel the few units a column asks for (a count column of mean 90
# has r ~ 200: log r ~ 5), more than a small table's whole budget. They are stored divided
# by this gain, which makes them move this many times faster.
SCALAR_GAIN = 10.0
# Weights files written before that stored these scalars under other names, as they are:
# each old name and the name it is read into (divided by the gain). Both names differ from
# the new ones, so an old file is converted, never read with the wrong meaning.
STORED_WITHOUT_GAIN = {
    "raw_scale": "raw_scale_over_gain",
    "log_total_count": "log_total_count_over_gain",
}
GAUSSIAN_KINDS = ("real", "positive")
COUNT_KINDS = ("count", "poisson")


def feature_width(column: TableColumn) -> int:
    """How many encoder features (and decoder outputs) a column has."""
    if column.kind == "categorical":
        return len(column.categories)
    return 2 if column.kind == "zero-inflated" else 1


def as_columns(columns: list[TableColumn | dict]) -> list[TableColumn]:
    """A schema as TableColumns (a config read from JSON holds them already; plain dicts, as
    a user may write them, are converted)."""
    return [c if isinstance(c, TableColumn) else TableColumn(**c) for c in columns]


class TabularLikelihood(nn.Module):
    """p(x|z) for a mixed-type table (see the module doc). ``event_shape`` is ``[F + C]``."""

    support = "table"
    discrete = False

    def __init__(
        self,
        event_shape: tuple[int, ...],
        columns: list[TableColumn | dict],
        min_scale: float = 1e-3,
        init_scale: float = 0.5,
        rank: int | None = None,
        missing: str = "at-random",
    ) -> None:
        super().__init__()
        self.columns = as_columns(columns)
        widths = [feature_width(c) for c in self.columns]
        self.num_features = sum(widths)
        self.event_shape = (self.num_features + len(self.columns),)
        if tuple(event_shape) != self.event_shape:
            raise ValueError(
                f"tabular likelihood: {len(self.columns)} columns make rows of "
                f"{self.event_shape[0]} numbers, the data shape is {list(event_shape)}"
            )
        self.param_shape = (self.num_features,)  # one output per feature (+ the joint head's)
        self.min_scale = min_scale
        starts = [sum(widths[:j]) for j in range(len(widths))]
        self.starts = starts

        def index(kinds: tuple[str, ...]) -> list[int]:
            return [j for j, c in enumerate(self.columns) if c.kind in kinds]

        def buffer(name: str, values: list, dtype=torch.long) -> None:
            self.register_buffer(name, torch.tensor(values, dtype=dtype), persistent=False)

        gauss = index(GAUSSIAN_KINDS)
        buffer("gauss_columns", gauss)
        buffer("gauss_features", [starts[j] for j in gauss])
        buffer("gauss_loc", [self.columns[j].loc for j in gauss], torch.float64)
        buffer("gauss_log_scale", [math.log(self.columns[j].scale) for j in gauss], torch.float64)
        buffer("gauss_positive", [self.columns[j].kind == "positive" for j in gauss], torch.bool)
        counts = index(COUNT_KINDS)
        buffer("count_columns", counts)
        buffer("count_features", [starts[j] for j in counts])
        buffer("count_poisson", [self.columns[j].kind == "poisson" for j in counts], torch.bool)
        zero = index(("zero-inflated",))
        buffer("zero_columns", zero)
        buffer("zero_features", [starts[j] for j in zero])
        buffer("zero_loc", [self.columns[j].loc for j in zero], torch.float64)
        buffer("zero_log_scale", [math.log(self.columns[j].scale) for j in zero], torch.float64)
        ordinal = index(("ordinal",))
        buffer("ordinal_columns", ordinal)
        buffer("ordinal_features", [starts[j] for j in ordinal])
        buffer("ordinal_loc", [self.columns[j].loc for j in ordinal], torch.float64)
        buffer("ordinal_scale", [self.columns[j].scale for j in ordinal], torch.float64)
        buffer("ordinal_top", [len(self.columns[j].levels) - 1 for j in ordinal])
        if ordinal:  # only then, as the zero-inflated scales
            self.ordinal = OrdinalCuts([len(self.columns[j].levels) for j in ordinal], SCALAR_GAIN)
        binary = index(("binary",))
        buffer("binary_columns", binary)
        buffer("binary_features", [starts[j] for j in binary])
        categorical = index(("categorical",))
        self.categorical = [(j, starts[j], widths[j]) for j in categorical]
        # All categorical columns' logits in one padded [n, K_max] gather, so that the loss
        # takes one softmax (and its backward one scatter) however many such columns there
        # are; a padding slot repeats the column's first feature and is masked out.
        k_max = max((widths[j] for j in categorical), default=0)
        buffer("categorical_columns", categorical)
        buffer(
            "categorical_index",
            [[starts[j] + (k if k < widths[j] else 0) for k in range(k_max)] for j in categorical],
        )
        pad = [[k >= widths[j] for k in range(k_max)] for j in categorical]
        buffer("categorical_pad", pad, torch.bool)
        # Per-column learned scales (Gaussian heads; sigma starts at half the standardised
        # column's spread) and log total counts r (negative binomial; r = 1 at the start).
        # The joint head decodes its scales instead (no parameter left without a gradient,
        # which distributed training would refuse): d's pre-activation and W follow the
        # features in the decoder output.
        self.rank = rank or 0
        init = math.log(math.expm1(init_scale - min_scale))  # softplus^{-1}
        if zero:  # only then: a weights file of a table without such a column lacks it
            self.zero_raw_scale_over_gain = nn.Parameter(
                torch.full((len(zero),), init / SCALAR_GAIN)
            )
        if rank is None:
            self.raw_scale_over_gain = nn.Parameter(torch.full((len(gauss),), init / SCALAR_GAIN))
        else:
            check_rank(rank, len(gauss), "the table's real and positive columns have")
            self.joint = LowRankParameters(rank, min_scale, init_scale)
            self.param_shape = (self.num_features + len(gauss) * (rank + 1),)
        self.log_total_count_over_gain = nn.Parameter(torch.zeros(len(counts)))
        # at-random adds no parameter (and no random draw): its runs and files are as before
        self.missing = missing
        if model := missingness_model(missing, len(gauss)):
            self.missingness = model

    # --- the pieces ------------------------------------------------------------------------

    def gaussian_scale(self) -> torch.Tensor:
        """sigma of each real/positive column on its standardised scale, ``[G]`` (without
        the joint head only)."""
        return self.min_scale + F.softplus(SCALAR_GAIN * self.raw_scale_over_gain)

    def zero_scale(self) -> torch.Tensor:
        """sigma of each zero-inflated column's standardised log v, ``[Z]``."""
        return self.min_scale + F.softplus(SCALAR_GAIN * self.zero_raw_scale_over_gain)

    def log_total_count(self) -> torch.Tensor:
        """log r of each count column's negative binomial, ``[N]`` (a Poisson column's is
        unused)."""
        return SCALAR_GAIN * self.log_total_count_over_gain

    def joint_parts(self, decoder_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The joint head's W ``[*, G, R]`` and d ``[*, G]`` (``rank`` >= 1 only)."""
        g, extra = len(self.gauss_columns), decoder_output[..., self.num_features :]
        factor = extra[..., g:].reshape(*extra.shape[:-1], g, self.rank)
        return self.joint.factor(factor), self.joint.variance(extra[..., :g])

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """The observed mask ``[*, C]`` (1 observed) of encoded rows ``x [*, F + C]``."""
        return x[..., self.num_features :]

    def counts(self, x: torch.Tensor) -> torch.Tensor:
        """The count columns' values ``[*, N]`` (0 where missing), exact integers."""
        return torch.expm1(x[..., self.count_features]).round()

    def log_rate(self, decoder_output: torch.Tensor) -> torch.Tensor:
        return decoder_output[..., self.count_features].clamp(-MAX_LOG_RATE, MAX_LOG_RATE)

    def ordinal_levels(self, x: torch.Tensor) -> torch.Tensor:
        """The ordinal columns' level indices ``[*, O]`` int64 of encoded rows (0 where
        missing)."""
        k = self.ordinal_loc + self.ordinal_scale * x[..., self.ordinal_features].double()
        return k.round().long().clamp(min=0).minimum(self.ordinal_top)

    def ordinal_log_probs(self, decoder_output: torch.Tensor) -> torch.Tensor:
        """log P(v = level k | z) of the ordinal columns, ``[*batch, O, K_max]`` nats (-inf
        past a column's own levels)."""
        return self.ordinal.level_log_probs(decoder_output[..., self.ordinal_features])

    def cell_log_probs(self, decoder_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p of every cell, ``[*batch, C]`` nats in the table's own units, 0 at missing
        cells (with the joint head, a real cell's conditional given the real cells before
        it). ``x [B, F + C]`` broadcasts against ``decoder_output [*batch, *param_shape]``."""
        return self._cells(decoder_output, x, joint=self.rank > 0)

    def _cells(self, decoder_output: torch.Tensor, x: torch.Tensor, joint: bool) -> torch.Tensor:
        """The cells' log p; with the joint head and ``joint`` False, the real and positive
        cells hold their Jacobian terms only (``log_density`` adds the joint density)."""
        out = decoder_output
        shape = torch.broadcast_shapes(out.shape[:-1], x.shape[:-1])
        cells = out.new_zeros((*shape, len(self.columns)))
        if len(self.gauss_columns):
            v = x[..., self.gauss_features]
            mu = out[..., self.gauss_features]
            if not self.rank:
                sigma = self.gaussian_scale()
                lp = -0.5 * ((v - mu) / sigma).square() - sigma.log() - 0.5 * LOG_2PI
            elif joint:
                observed = self.mask(x)[..., self.gauss_columns]
                lp = chain_log_probs(v - mu, *self.joint_parts(out), observed)
            else:
                lp = torch.zeros_like(v - mu)
            log_scale = self.gauss_log_scale.to(lp.dtype)
            # positive: log v = loc + scale * x, the Jacobian of v -> log v is 1/v
            log_v = self.gauss_loc.to(lp.dtype) + log_scale.exp() * v
            lp = lp - log_scale - torch.where(self.gauss_positive, log_v, torch.zeros_like(log_v))
            cells = cells.index_copy(-1, self.gauss_columns, lp.expand(*shape, -1))
        if len(self.zero_columns):
            f = self.zero_features
            logit, mu, y = out[..., f], out[..., f + 1], x[..., f + 1]
            sigma = self.zero_scale()
            log_scale = self.zero_log_scale.to(mu.dtype)
            log_v = self.zero_loc.to(mu.dtype) + log_scale.exp() * y  # finite at 0 and missing
            density = -0.5 * ((y - mu) / sigma).square() - sigma.log() - 0.5 * LOG_2PI
            positive = F.logsigmoid(-logit) + density - log_scale - log_v
            lp = torch.where(x[..., f] > 0.5, F.logsigmoid(logit), positive)
            cells = cells.index_copy(-1, self.zero_columns, lp.expand(*shape, -1))
        if len(self.count_columns):
            k = self.counts(x)
            log_m = self.log_rate(out)
            poisson = k * log_m - log_m.exp() - torch.lgamma(k + 1)
            # NB(k; r, p) with logit(p) = log m - log r: mean r p / (1 - p) = m
            log_r = self.log_total_count()
            r = log_r.exp()
            logits = log_m - log_r
            nb = (
                torch.lgamma(k + r)
                - torch.lgamma(r)
                - torch.lgamma(k + 1)
                + k * F.logsigmoid(logits)
                + r * F.logsigmoid(-logits)
            )
            lp = torch.where(self.count_poisson, poisson, nb)
            cells = cells.index_copy(-1, self.count_columns, lp.expand(*shape, -1))
        if len(self.ordinal_columns):
            log_p = self.ordinal_log_probs(out)  # [*, O, K_max]
            k = self.ordinal_levels(x).expand(*shape, -1)
            lp = log_p.expand(*shape, -1, -1).gather(-1, k[..., None])[..., 0]
            cells = cells.index_copy(-1, self.ordinal_columns, lp)
        if len(self.binary_columns):
            logits = out[..., self.binary_features]
            target = x[..., self.binary_features].expand_as(logits)
            lp = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            cells = cells.index_copy(-1, self.binary_columns, lp.expand(*shape, -1))
        if len(self.categorical_columns):
            pad = self.categorical_pad
            logits = out[..., self.categorical_index].masked_fill(pad, -math.inf)
            log_p = torch.log_softmax(logits, dim=-1).masked_fill(pad, 0.0)
            one_hot = x[..., self.categorical_index].masked_fill(pad, 0.0)  # 0 when missing
            lp = (log_p * one_hot).sum(-1)
            cells = cells.index_copy(-1, self.categorical_columns, lp.expand(*shape, -1))
        return cells * self.mask(x)

    def filled(self, decoder_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The real and positive columns' standardised values ``[*batch, G]``, the missing
        ones drawn (``vaekit.distributions.missingness.filled_values``)."""
        return filled_values(self, decoder_output, x)

    def log_density(
        self, decoder_output: torch.Tensor, x: torch.Tensor, filled: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(x|z) over the observed cells, ``[*batch]`` nats per row (the module doc);
        with ``missing`` self-masking, plus log p(s|x) of the row's missing mask s
        (``vaekit.distributions.missingness``) at ``filled`` (:meth:`filled`; drawn here
        when None)."""
        if not self.rank:
            log_p = self.cell_log_probs(decoder_output, x).sum(-1)
        else:
            # The joint Gaussian at O(G R^2) (Woodbury), not through the per-cell chain rule.
            v = x[..., self.gauss_features]
            residual = v - decoder_output[..., self.gauss_features]
            observed = self.mask(x)[..., self.gauss_columns]
            joint = masked_log_prob(residual, *self.joint_parts(decoder_output), observed)
            log_p = self._cells(decoder_output, x, joint=False).sum(-1) + joint
        if self.missing == "at-random":
            return log_p
        if filled is None:
            filled = self.filled(decoder_output, x)
        observed = self.mask(x)[..., self.gauss_columns]
        return log_p + self.missingness.log_prob(filled, observed)

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        return TabularDistribution(self, decoder_output)

    def page_mean(self) -> str | None:
        """ "table": the explorer's page reads the decoder output as it is and turns it into
        each column's value with :meth:`page_heads`."""
        return "table"

    def page_heads(self) -> list[dict]:
        """Per column, what the explorer's page needs to compute its E[v|z] from the decoder
        output as ``table_values.column_means`` does: name, kind, first output and width,
        categories;
        for a real or positive column loc, scale and the variance sigma^2 on the standardised
        scale, a number, or with the joint head the outputs of d's pre-activation and of W's
        row (``joint``: the page adds d + sum_r W_r^2); for a zero-inflated column loc, scale
        and the variance of its standardised log v (its outputs: the logit of P(0), the
        mean); for an ordinal column its levels and cut points (its output: eta)."""
        gauss = {int(j): i for i, j in enumerate(self.gauss_columns)}
        if not self.rank:
            variance = self.gaussian_scale().detach().double().square().tolist()
        heads = []
        for j, (column, start) in enumerate(zip(self.columns, self.starts, strict=True)):
            head = {"name": column.name, "kind": column.kind, "start": start}
            head.update(width=feature_width(column), categories=list(column.categories))
            if column.kind == "zero-inflated":  # outputs: the logit of P(0), then the mean
                z = int((self.zero_columns == j).nonzero())
                variance = self.zero_scale()[z].detach().double().square().item()
                head.update(loc=column.loc, scale=column.scale, var=variance)
            if column.kind == "ordinal":
                o = int((self.ordinal_columns == j).nonzero())
                cuts = self.ordinal.cuts()[o, : len(column.levels) - 1]
                head.update(levels=list(column.levels), cuts=cuts.detach().double().tolist())
            if j in gauss:
                i, f, g = gauss[j], self.num_features, len(gauss)
                head.update(loc=column.loc, scale=column.scale)
                if self.rank:
                    factor = [f + g + i * self.rank + r for r in range(self.rank)]
                    head["joint"] = {
                        "diag": f + i,
                        "factor": factor,
                        "offset": self.joint.offset,
                        "min_scale": self.joint.min_scale,
                        "gain": self.joint.factor_gain,
                    }
                else:
                    head["var"] = variance[i]
            heads.append(head)
        return heads

    def mean(self, decoder_output: torch.Tensor) -> torch.Tensor:
        """E[x|z] in the encoded layout ``[*batch, F + C]``: the Gaussian heads' means, a
        zero-inflated column's P(0) and mean of the standardised log v given v > 0, the
        counts' log1p(mean), an ordinal's mean level index (standardised), the binary
        probability, the category probabilities, and a mask of ones (every cell
        predicted). In the table's units: ``vaekit.distributions.table_values``."""
        out = decoder_output[..., : self.num_features]
        parts = out.clone()
        if len(self.count_columns):
            parts[..., self.count_features] = torch.log1p(self.log_rate(out).exp())
        if len(self.binary_columns):
            parts[..., self.binary_features] = torch.sigmoid(out[..., self.binary_features])
        if len(self.zero_columns):
            parts[..., self.zero_features] = torch.sigmoid(out[..., self.zero_features])
        if len(self.ordinal_columns):
            probs = self.ordinal_log_probs(out).exp()  # [*, O, K_max], 0 past the levels
            k = torch.arange(probs.shape[-1], dtype=probs.dtype, device=probs.device)
            index = (probs * k).sum(-1)
            loc, scale = self.ordinal_loc.to(out.dtype), self.ordinal_scale.to(out.dtype)
            parts[..., self.ordinal_features] = (index - loc) / scale
        for _, start, width in self.categorical:
            parts[..., start : start + width] = torch.softmax(out[..., start : start + width], -1)
        return torch.cat([parts, parts.new_ones((*parts.shape[:-1], len(self.columns)))], -1)

    def joint_given(
        self, decoder_output: torch.Tensor, x: torch.Tensor | None, draw: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The joint head's real and positive columns on their standardised scale, given
        the observed ones of encoded rows ``x`` (none when ``x`` is None): their mean or one
        draw ``[*, G]`` and their variance ``[*, G]`` (float64; ``rank`` >= 1 only)."""
        out = decoder_output.double()
        mu = out[..., self.gauss_features]
        factor, variance = self.joint_parts(out)
        if x is None:
            values, observed = torch.zeros_like(mu), torch.zeros_like(mu)
        else:
            values = x[..., self.gauss_features].double()
            observed = self.mask(x)[..., self.gauss_columns].double()
        return condition(mu, factor, variance, values, observed, draw)


class TabularDistribution(Distribution):
    """p(x|z) as a distribution object: ``log_prob(x)`` over the observed cells of encoded
    rows (nats per row), ``mean`` in the encoded layout."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector

    def __init__(self, likelihood: TabularLikelihood, decoder_output: torch.Tensor) -> None:
        self.likelihood, self.decoder_output = likelihood, decoder_output
        super().__init__(decoder_output.shape[:-1], likelihood.event_shape, validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.likelihood.mean(self.decoder_output)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.likelihood.log_density(self.decoder_output, value)


def upgrade_stored_scalars(state: dict) -> dict:
    """``state`` (a weights file's ``{name: tensor}``, or its header's ``{name: (dtype,
    shape)}``) with a table likelihood's scalars from a file written before they were stored
    over :data:`SCALAR_GAIN` renamed and, for tensors, divided by it. Other weights (an
    image model's own ``raw_scale``) pass unchanged: only a module that also holds
    ``log_total_count``, which only the table likelihood had, is converted."""
    out = dict(state)
    for key in state:
        if key != "log_total_count" and not key.endswith(".log_total_count"):
            continue
        prefix = key[: -len("log_total_count")]
        for old, new in STORED_WITHOUT_GAIN.items():
            if prefix + old in out and prefix + new not in out:
                value = out.pop(prefix + old)
                out[prefix + new] = value / SCALAR_GAIN if torch.is_tensor(value) else value
    return out
