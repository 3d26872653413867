"""What the single-latent models (VAE, AE, conditional VAE) share: their network fields, and
building the encoder/decoder bodies from them (or taking the user's own); and the
``model.init`` field, which the hierarchical VAE shares too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from vaekit.distributions import PRIORS
from vaekit.networks import Init, build_networks, default_network, initialise_
from vaekit.settings import ConfigError, ModelConfig, setting


def init_setting() -> Any:
    """The ``model.init`` field, one definition for every model that has it."""
    return setting(
        "default",
        help="how the built layers start: default (PyTorch's) or glorot (Glorot & Bengio's "
        "uniform with the activation's gain, zero biases; Burda et al.'s choice): every layer "
        "of the hierarchical VAE, the encoder and decoder bodies of the others, never bodies "
        "you pass in. With tanh, glorot lets the code depend on x from the first step, which "
        "a KL warm-up needs",
    )


@dataclass
class BodyConfig(ModelConfig):
    """Encoder/decoder bodies of a model with one latent vector ``[latent_dim]``."""

    latent_dim: int = setting(16, help="m, the dimension of the latent code z")
    network: Literal["auto", "mlp", "conv"] = setting(
        "auto", help="encoder/decoder bodies; auto: conv for 28x28 and 32x32 images, else mlp"
    )
    hidden_dims: list[int] = setting(
        default_factory=lambda: [512, 256],
        help="MLP widths, e.g. 512,256 (the decoder mirrors them)",
    )
    activation: Literal["relu", "elu", "gelu", "tanh", "silu"] = setting(
        "relu", help="the hidden layers' nonlinearity"
    )
    init: Init = init_setting()
    dropout: float = setting(
        0.0,
        help="the probability of zeroing each hidden activation of the built encoder and "
        "decoder bodies while training (a regulariser against overfitting); evaluation, "
        "importance sampling and every other use run without it. 0: no dropout layers",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be >= 1, got {self.latent_dim}")
        if not 0.0 <= self.dropout < 1.0:  # also refuses NaN
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if any(h < 1 for h in self.hidden_dims):
            raise ConfigError(f"model.hidden_dims must be positive widths, got {self.hidden_dims}")


def check_top_prior(prior: str, num_pseudo_inputs: int) -> None:
    """The hierarchical models' ``model.prior`` (a registered prior for the top layer) and
    ``model.num_pseudo_inputs`` (>= 1), each refused in one line naming the field."""
    if num_pseudo_inputs < 1:
        raise ConfigError(f"model.num_pseudo_inputs must be >= 1, got {num_pseudo_inputs}")
    if prior not in PRIORS:
        raise ConfigError(
            f"model.prior must be one of {', '.join(map(repr, PRIORS))}; got {prior!r}"
        )


def check_buildable(config: ModelConfig) -> None:
    """A model is built from a config whose data-dependent fields are filled in."""
    if config.data_shape is None:
        raise ValueError("model config has no data_shape: set it or build the model from data")
    if config.likelihood == "auto":
        raise ValueError("model.likelihood is 'auto': resolve it from the dataset before building")


def resolve_network(config: BodyConfig) -> None:
    """Resolve ``network = "auto"`` from the data shape, in place."""
    check_buildable(config)
    if config.network == "auto":
        config.network = default_network(tuple(config.data_shape))


def build_bodies(
    config: BodyConfig,
    encoder: nn.Module | None,
    decoder: nn.Module | None,
    output_shape: tuple[int, ...],
    decoder_input_dim: int | None = None,
) -> tuple[nn.Module, nn.Module]:
    """The user's encoder/decoder where given, the configured network's otherwise, started
    as ``model.init`` says. The decoder reads ``decoder_input_dim`` numbers (``latent_dim``
    unless given: a conditional decoder also reads the label) and writes ``output_shape``,
    the likelihood's ``param_shape``."""
    if encoder is None or decoder is None:
        built = build_networks(
            config.network,
            tuple(config.data_shape),
            config.latent_dim if decoder_input_dim is None else decoder_input_dim,
            config.hidden_dims,
            config.activation,
            output_shape,
            config.dropout,
        )
        for body in built:
            initialise_(body, config.init, config.activation)
        encoder = encoder if encoder is not None else built[0]
        decoder = decoder if decoder is not None else built[1]
    return encoder, decoder
