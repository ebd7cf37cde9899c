"""pytest loads this first, which puts tests/ on sys.path: helpers such as _signals import from any test dir."""
