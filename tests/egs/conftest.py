"""The first full runs of the tiny mini and Sprites recipes, made once per session and shared by
the recipe tests and the results page test (see _recipes.py)."""

from __future__ import annotations

import pytest

from _recipes import MINI_ARGS, SPRITES_ARGS, TINY_JUDGES, RecipeRun, first_run


@pytest.fixture(scope="session")
def mini_recipe(tmp_path_factory) -> RecipeRun:
    return first_run(tmp_path_factory.mktemp("mini"), "mini", MINI_ARGS, judges=TINY_JUDGES)


@pytest.fixture(scope="session")
def sprites_recipe(tmp_path_factory) -> RecipeRun:
    return first_run(tmp_path_factory.mktemp("sprites"), "sprites", SPRITES_ARGS)
