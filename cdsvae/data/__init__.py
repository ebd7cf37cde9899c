"""cdsvae.data."""
