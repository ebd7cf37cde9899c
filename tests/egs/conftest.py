"""The first full runs of the tiny mini and Sprites recipes, made once per session, in the
background while the rest of the suite runs (tests/_shared_runs.py), and shared by the recipe
tests and the results page test (see _recipes.py)."""

from __future__ import annotations

import pytest

import _shared_runs
from _recipes import MINI_ARGS, SPRITES_ARGS, TINY_JUDGES, RecipeRun, first_run

_shared_runs.register(
    "mini_recipe", lambda root: first_run(root, "mini", MINI_ARGS, judges=TINY_JUDGES, break_test_wav=True))
_shared_runs.register("sprites_recipe", lambda root: first_run(root, "sprites", SPRITES_ARGS))


@pytest.fixture(scope="session")
def mini_recipe(tmp_path_factory) -> RecipeRun:
    """All seven stages of the mini recipe, two seeds of C-DSVAE and DSVAE, with --skip_bad true
    and one test wav unreadable from stage 2 on."""
    return _shared_runs.result("mini_recipe", tmp_path_factory.mktemp)


@pytest.fixture(scope="session")
def sprites_recipe(tmp_path_factory) -> RecipeRun:
    return _shared_runs.result("sprites_recipe", tmp_path_factory.mktemp)
