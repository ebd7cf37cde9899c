"""cdsvae.train."""
