"""cdsvae.augment."""
