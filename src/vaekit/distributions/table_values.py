"""A mixed-type table's values read from its decoder output, in the table's own units.

The table likelihood (``vaekit.distributions.tabular``) scores encoded rows; these turn one
decoder output per row into what a user sees: each column's posterior-predictive mean given
z (imputation's point estimate, the report's reconstructions) and one draw of each column
(multiple imputations, synthetic rows). Numbers come back in the column's units (a positive
column's v, not its standardised log), categories as probabilities or indices.
"""

from __future__ import annotations

import torch
from torch.distributions import Gamma

from vaekit.distributions.tabular import (
    COUNT_KINDS,
    GAUSSIAN_KINDS,
    MAX_LOG_RATE,
    TabularLikelihood,
)


def column_means(
    likelihood: TabularLikelihood, decoder_output: torch.Tensor, x: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """Per column, E[v|z] in the table's units ``[*batch]`` (real; positive: the
    log-normal mean exp(mu_v + s_v^2 / 2); zero-inflated: (1 - P(0)) times that; counts:
    the mean; ordinal: sum_k P(level k) times level k's value, the squared error's
    minimiser, which may fall between levels), or the category
    probabilities ``[*batch, K]`` (binary: K = 2). With the joint head and encoded rows
    ``x``, the real and positive columns' means are given x's observed ones among them
    (the other columns are independent given z)."""
    out = decoder_output.double()
    result: list[torch.Tensor] = []
    g = {int(j): i for i, j in enumerate(likelihood.gauss_columns)}
    zero = {int(j): i for i, j in enumerate(likelihood.zero_columns)}
    ordinal = _ordinal_probs(likelihood, out)
    if likelihood.rank:
        gauss_mean, gauss_var = likelihood.joint_given(out, x, draw=False)
    else:
        gauss_mean = out[..., likelihood.gauss_features]
        gauss_var = likelihood.gaussian_scale().double().square().expand_as(gauss_mean)
    for j, (column, start) in enumerate(zip(likelihood.columns, likelihood.starts, strict=True)):
        if column.kind in GAUSSIAN_KINDS:
            mu_v = column.loc + column.scale * gauss_mean[..., g[j]]
            if column.kind == "positive":
                s2_v = column.scale**2 * gauss_var[..., g[j]]
                mu_v = (mu_v + 0.5 * s2_v).exp()
            result.append(mu_v)
        elif column.kind == "zero-inflated":
            s2_v = column.scale**2 * likelihood.zero_scale()[zero[j]].double().square()
            log_mean = column.loc + column.scale * out[..., start + 1] + 0.5 * s2_v
            result.append(torch.sigmoid(-out[..., start]) * log_mean.exp())
        elif column.kind in COUNT_KINDS:
            result.append(out[..., start].clamp(-MAX_LOG_RATE, MAX_LOG_RATE).exp())
        elif column.kind == "ordinal":
            levels = torch.tensor(column.levels, dtype=torch.float64)
            result.append((ordinal[j] * levels).sum(-1))
        elif column.kind == "binary":
            p = torch.sigmoid(out[..., start])
            result.append(torch.stack([1 - p, p], -1))
        else:
            width = len(column.categories)
            result.append(torch.softmax(out[..., start : start + width], -1))
    return result


def _ordinal_probs(likelihood: TabularLikelihood, out: torch.Tensor) -> dict[int, torch.Tensor]:
    """Each ordinal column's level probabilities ``[*batch, K]`` (float64), by column."""
    if not len(likelihood.ordinal_columns):
        return {}
    probs = likelihood.ordinal_log_probs(out).exp()
    return {
        int(j): probs[..., o, : len(likelihood.columns[j].levels)]
        for o, j in enumerate(likelihood.ordinal_columns)
    }


def column_draws(
    likelihood: TabularLikelihood, decoder_output: torch.Tensor, x: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """Per column, one draw v ~ p(v|z) in the table's units ``[*batch]`` (a category
    index for binary and categorical columns), from torch's global generator (the
    gamma draws of the negative binomial take no other; an ordinal's draw is one of its
    levels). With the joint head and encoded
    rows ``x``, the real and positive columns are drawn given x's observed ones."""
    out = decoder_output.double()
    r_all = likelihood.log_total_count().double().exp()
    g = {int(j): i for i, j in enumerate(likelihood.gauss_columns)}
    n = {int(j): i for i, j in enumerate(likelihood.count_columns)}
    zero = {int(j): i for i, j in enumerate(likelihood.zero_columns)}
    ordinal = _ordinal_probs(likelihood, out)
    result: list[torch.Tensor] = []
    joint = likelihood.joint_given(out, x, draw=True)[0] if likelihood.rank else None

    for j, (column, start) in enumerate(zip(likelihood.columns, likelihood.starts, strict=True)):
        head = out[..., start]
        if column.kind in GAUSSIAN_KINDS:
            if joint is None:
                sigma = likelihood.gaussian_scale()[g[j]].double()
                y = head + sigma * torch.randn(head.shape, dtype=torch.float64)
            else:
                y = joint[..., g[j]]
            v = column.loc + column.scale * y
            result.append(v.exp() if column.kind == "positive" else v)
        elif column.kind == "zero-inflated":  # exactly 0 with probability P(0)
            sigma = likelihood.zero_scale()[zero[j]].double()
            y = out[..., start + 1] + sigma * torch.randn(head.shape, dtype=torch.float64)
            is_zero = torch.rand(head.shape, dtype=torch.float64) < torch.sigmoid(head)
            positive = (column.loc + column.scale * y).exp()
            result.append(torch.where(is_zero, torch.zeros_like(positive), positive))
        elif column.kind in COUNT_KINDS:
            rate = head.clamp(-MAX_LOG_RATE, MAX_LOG_RATE).exp()
            if column.kind == "count":  # NB: Poisson with a Gamma(r, mean m) rate
                r = r_all[n[j]].expand(head.shape)
                rate = Gamma(r, r / rate).sample()
            result.append(torch.poisson(rate))
        elif column.kind == "ordinal":
            probs = ordinal[j]
            draw = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1)
            levels = torch.tensor(column.levels, dtype=torch.float64)
            result.append(levels[draw.reshape(probs.shape[:-1])])
        elif column.kind == "binary":
            u = torch.rand(head.shape, dtype=torch.float64)
            result.append((u < torch.sigmoid(head)).long())
        else:
            logits = out[..., start : start + len(column.categories)]
            flat = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
            draw = torch.multinomial(flat, 1)
            result.append(draw.reshape(logits.shape[:-1]))
    return result
