"""The interactive latent explorer: ``vaekit explore RUN`` writes ``RUN/explore.html``.

See :mod:`vaekit.explore.builder` for what the page holds, :mod:`vaekit.explore.spaces` for
what each model gets (decode by group for the hierarchical ones) and
:mod:`vaekit.explore.decoder_spec` for the in-page decoder.
"""

from vaekit.explore.builder import (
    EXPLORE_FILE,
    Capabilities,
    build_explorer,
    capabilities,
    write_explorer,
)
from vaekit.explore.decoder_spec import UnsupportedLayerError, decoder_program

__all__ = [
    "EXPLORE_FILE",
    "Capabilities",
    "UnsupportedLayerError",
    "build_explorer",
    "capabilities",
    "decoder_program",
    "write_explorer",
]
