"""cdsvae.eval."""
