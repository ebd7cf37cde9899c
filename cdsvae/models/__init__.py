"""cdsvae.models."""
