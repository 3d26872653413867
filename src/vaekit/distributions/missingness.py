"""How a mixed-type table's cells came to be missing: at random, or self-masking.

``at-random`` (the default) models nothing: the likelihood of a row is p(x_obs|z), which is
the right one when whether a cell is missing does not depend on its own (unseen) value.

``self-masking`` is the not-MIWAE model (Ipsen, Mattei & Frellsen 2021) in its self-masking
logistic form: for each real or positive column j,

    P(cell j missing | x_j) = sigmoid(a_j t_j + b_j),

with t_j the cell's standardised value (the encoder's: (v - loc) / scale, for a positive
column (log v - loc) / scale) and a_j, b_j learned. A row's likelihood becomes
p(x_obs|z) p(s|x_obs, x_mis) with s its missing mask and x_mis one draw from
p(x_mis|z, x_obs) per z (reparameterised, so a_j, b_j and the decoder both get gradients),
which makes the importance-weighted bound log E_q[p(x_obs|z) p(s|x) p(z) / q(z|x_obs)].
Imputation weights each z_k by the same terms, so a cell hidden more often when high gets
imputed higher. Use it when cells are more likely missing because their own value is high
(or low): incomes left blank by high earners, readings above a sensor's range.

Only the real and positive columns (the Gaussian heads, whose draws are reparameterised)
get a mechanism. The other columns' cells stay missing at random: a count's draw is not
differentiable, and a per-category rate for a binary or categorical column is left out to
keep one mechanism, of one form, over columns on one scale. The slope and offset are
stored divided by a gain, as the table likelihood's other per-column scalars are, so that
Adam moves them at a useful speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.distributions.lowrank import condition

MISSING_MODELS = ("at-random", "self-masking")
# Adam moves a weight by about the learning rate a step: a slope of 2 would take thousands
# of steps stored as it is. Stored over this gain it moves this many times faster.
GAIN = 10.0


class SelfMasking(nn.Module):
    """P(missing | t) = sigmoid(a t + b) per modelled column, ``G`` of them."""

    def __init__(self, num_columns: int) -> None:
        super().__init__()
        self.slope_over_gain = nn.Parameter(torch.zeros(num_columns))
        self.offset_over_gain = nn.Parameter(torch.zeros(num_columns))

    def logits(self, t: torch.Tensor) -> torch.Tensor:
        """a t + b, the logit of P(missing), for standardised values ``t [*, G]``."""
        return GAIN * (self.slope_over_gain * t + self.offset_over_gain)

    def log_prob(self, t: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """log p(s|x) summed over the G columns, ``[*]`` nats per row: log sigmoid(-l) for an
        observed cell and log sigmoid(l) for a missing one, l = a t + b; ``t [*, G]`` holds
        the observed values and the drawn ones where missing, ``observed [*, G]`` is 1 or 0."""
        logit = self.logits(t)
        return torch.where(observed > 0.5, F.logsigmoid(-logit), F.logsigmoid(logit)).sum(-1)


def missingness_model(missing: str, num_columns: int) -> SelfMasking | None:
    """The model named by ``missing`` over a table's ``num_columns`` real and positive
    columns: None at random (no parameter); a one-line error naming the flag otherwise."""
    if missing not in MISSING_MODELS:
        raise ValueError(f"--missing must be one of {', '.join(MISSING_MODELS)}, got {missing!r}")
    if missing == "at-random":
        return None
    if not num_columns:
        raise ValueError(
            "--missing self-masking models the real and positive columns' cells; "
            "this table has none"
        )
    return SelfMasking(num_columns)


def filled_values(likelihood, decoder_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A table likelihood's (``TabularLikelihood``) real and positive columns' standardised
    values ``[*batch, G]``: x's where observed, one reparameterised draw from
    p(x_mis|z, x_obs) where missing (torch's global generator; with the joint head, given
    the observed real cells). ``x [B, F + C]`` broadcasts against the decoder output."""
    v = x[..., likelihood.gauss_features]
    mu = decoder_output[..., likelihood.gauss_features]
    observed = likelihood.mask(x)[..., likelihood.gauss_columns]
    if likelihood.rank:
        shape = mu.shape
        v, observed = v.expand(shape), observed.expand(shape)
        factor, variance = likelihood.joint_parts(decoder_output)
        return condition(mu, factor, variance, v, observed, draw=True)[0]
    y = mu + likelihood.gaussian_scale() * torch.randn_like(mu)
    return torch.where(observed > 0.5, v, y)
