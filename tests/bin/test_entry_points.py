"""Every tool in cdsvae.bin is a console script of setup.py and answers --help."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import cdsvae.bin

REPO = Path(__file__).resolve().parents[2]
TOOLS = sorted(m.name for m in pkgutil.iter_modules(cdsvae.bin.__path__) if not m.name.startswith("_"))


def test_every_tool_is_a_console_script():
    setup = (REPO / "setup.py").read_text()
    scripts = dict(re.findall(r'"(cdsvae-[\w-]+) = cdsvae\.bin\.(\w+):cli"', setup))
    assert sorted(scripts.values()) == TOOLS
    for name, module in scripts.items():
        assert name == "cdsvae-" + module.replace("_", "-")


@pytest.mark.parametrize("tool", TOOLS)
def test_help(tool, capsys):
    module = importlib.import_module(f"cdsvae.bin.{tool}")
    assert callable(module.cli)
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out
