"""LiVO: value alignment for text-to-image diffusion models with a plug-and-play value encoder.

The public API lives in the sub-packages (``livo.data``, ``livo.values``, ``livo.models``, ...);
the Rust engine ``livo._native`` is an implementation detail.
"""

from livo._native import __version__

__all__ = ["__version__"]
