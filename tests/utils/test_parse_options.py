"""utils/parse_options.sh: Kaldi option semantics, exercised through a real bash script."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PARSE_OPTIONS = REPO / "utils" / "parse_options.sh"

SCRIPT = f"""#!/usr/bin/env bash
set -euo pipefail
nj=4
foo_bar=default
use_gpu=false
empty=
help_message="Usage: demo.sh [options] <in> <out>
  --nj N          jobs
  --foo-bar X     a value
  --use-gpu BOOL  a boolean"
. {PARSE_OPTIONS}
echo "nj=$nj"
echo "foo_bar=$foo_bar"
echo "use_gpu=$use_gpu"
echo "empty=$empty"
echo "nargs=$#"
for a in "$@"; do echo "arg=$a"; done
"""


@pytest.fixture()
def script(tmp_path: Path) -> Path:
    path = tmp_path / "demo.sh"
    path.write_text(SCRIPT)
    path.chmod(0o755)
    return path


def run(script: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *args], capture_output=True, text=True, cwd=cwd, timeout=30)


def values(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if not line.startswith("arg="))


def positional(stdout: str) -> list[str]:
    return [line[4:] for line in stdout.splitlines() if line.startswith("arg=")]


def test_defaults_unchanged_without_options(script):
    r = run(script, "in", "out")
    assert r.returncode == 0, r.stderr
    assert values(r.stdout) == {"nj": "4", "foo_bar": "default", "use_gpu": "false", "empty": "", "nargs": "2"}
    assert positional(r.stdout) == ["in", "out"]


@pytest.mark.parametrize("spelling", ["--foo-bar", "--foo_bar"])
def test_dash_and_underscore_set_the_same_variable(script, spelling):
    r = run(script, spelling, "hello world", "pos")
    assert r.returncode == 0, r.stderr
    assert values(r.stdout)["foo_bar"] == "hello world"
    assert positional(r.stdout) == ["pos"]


def test_equals_form_and_last_option_wins(script):
    r = run(script, "--nj=8", "--nj", "16", "--empty", "x=y")
    assert r.returncode == 0, r.stderr
    v = values(r.stdout)
    assert v["nj"] == "16"
    assert v["empty"] == "x=y"


def test_unknown_option_prints_help_and_exits_2(script):
    r = run(script, "--nj", "2", "--no-such-thing", "1", "in")
    assert r.returncode == 2
    assert "Usage: demo.sh" in r.stderr
    assert "unknown option --no-such-thing" in r.stderr
    assert r.stdout == ""


def test_internal_and_invalid_names_are_unknown(script):
    assert run(script, "--__po_i", "1").returncode == 2
    r = run(script, "--9lives", "1")
    assert r.returncode == 2 and "unknown option --9lives" in r.stderr


def test_option_without_value_exits_2(script):
    r = run(script, "--nj")
    assert r.returncode == 2
    assert "--nj needs a value" in r.stderr


@pytest.mark.parametrize("value", ["true", "false"])
def test_boolean_accepts_true_false(script, value):
    r = run(script, "--use-gpu", value)
    assert r.returncode == 0, r.stderr
    assert values(r.stdout)["use_gpu"] == value


@pytest.mark.parametrize("value", ["yes", "1", "True", ""])
def test_boolean_rejects_anything_else(script, value):
    r = run(script, "--use_gpu", value)
    assert r.returncode == 2
    assert "boolean" in r.stderr and "true or false" in r.stderr


def test_config_file_gives_defaults_that_command_line_overrides(script, tmp_path):
    conf = tmp_path / "opts.conf"
    conf.write_text("nj=32\nfoo_bar=from_config\n")
    # --config comes after --nj on the command line, yet --nj still wins: configs are defaults.
    r = run(script, "--nj", "3", "--config", str(conf), "pos")
    assert r.returncode == 0, r.stderr
    v = values(r.stdout)
    assert v["nj"] == "3"
    assert v["foo_bar"] == "from_config"
    assert positional(r.stdout) == ["pos"]


def test_missing_config_file_is_an_error(script, tmp_path):
    r = run(script, "--config", str(tmp_path / "nope.conf"))
    assert r.returncode == 2
    assert "config file not found" in r.stderr and "nope.conf" in r.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_message_and_exits_0(script, flag):
    r = run(script, "--nj", "2", flag)
    assert r.returncode == 0
    assert r.stdout.startswith("Usage: demo.sh [options] <in> <out>")
    assert "--use-gpu BOOL" in r.stdout
    assert "nj=" not in r.stdout


def test_double_dash_ends_options(script):
    r = run(script, "--nj", "5", "--", "--not-an-option", "x")
    assert r.returncode == 0, r.stderr
    assert values(r.stdout)["nj"] == "5"
    assert positional(r.stdout) == ["--not-an-option", "x"]


def test_parsing_stops_at_first_positional(script):
    r = run(script, "in", "--nj", "5")
    assert r.returncode == 0, r.stderr
    assert values(r.stdout)["nj"] == "4"
    assert positional(r.stdout) == ["in", "--nj", "5"]


def test_values_with_shell_metacharacters_are_stored_verbatim(script):
    nasty = "$(touch pwned); `x` 'q' \"d\" \\ *"
    r = run(script, "--foo-bar", nasty, cwd=script.parent)
    assert r.returncode == 0, r.stderr
    assert values(r.stdout)["foo_bar"] == nasty
    assert not (script.parent / "pwned").exists()
