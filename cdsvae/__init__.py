"""cdsvae: Contrastively Disentangled Sequential VAE recipes for speech and video.

``from cdsvae import Disentangler`` gives the inference class of :mod:`cdsvae.inference`; it is
imported on first use, so ``import cdsvae`` stays light (no torch).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Disentangler":
        from cdsvae.inference import Disentangler

        return Disentangler
    raise AttributeError(f"module 'cdsvae' has no attribute {name!r}")
