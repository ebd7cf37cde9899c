"""cdsvae: Contrastively Disentangled Sequential VAE recipes for speech and video."""

__version__ = "0.1.0"
