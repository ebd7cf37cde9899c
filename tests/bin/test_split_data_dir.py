"""split_data_dir and its wrapper utils/split_data.sh: data/<set>/splitN/1..N, by speaker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdsvae.bin.split_data_dir import main
from cdsvae.data.datadir import DataDir
from cdsvae.data.validate import validate_data_dir

REPO = Path(__file__).resolve().parents[2]
SPEAKERS = {"f01": 4, "f02": 3, "m01": 5, "m02": 1, "m03": 2}


def _data(path: Path) -> Path:
    path.mkdir(parents=True)
    utts = [(f"{s}-u{i}", s) for s, n in SPEAKERS.items() for i in range(n)]
    (path / "wav.scp").write_text("".join(f"{u} /audio/{u}.wav\n" for u, _ in utts))
    (path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utts))
    (path / "text").write_text("".join(f"{u} words of {u}\n" for u, _ in utts))
    (path / "spk2utt").write_text("".join(f"{s} {' '.join(u for u, t in utts if t == s)}\n" for s in SPEAKERS))
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_split_by_speaker_writes_n_valid_parts(tmp_path):
    src = _data(tmp_path / "data" / "train")
    assert main([str(src), "3"]) == 0
    parts = sorted((src / "split3").iterdir())
    assert [p.name for p in parts] == ["1", "2", "3"]
    seen: list[str] = []
    for part in parts:
        assert validate_data_dir(part, check_audio=False) == []
        data = DataDir.load(part)
        assert not set(data.speakers) & set(seen), "a speaker was split across parts"
        seen += data.speakers
        assert len(data.utterances) == sum(SPEAKERS[s] for s in data.speakers)
        assert sorted(data.tables["text"]) == data.utterances
    assert sorted(seen) == sorted(SPEAKERS)


def test_per_utt_and_usage_errors(tmp_path, capsys):
    src = _data(tmp_path / "d")
    assert main(["--per-utt", str(src), "4"]) == 0
    sizes = [len(DataDir.load(src / "split4utt" / str(k)).utterances) for k in range(1, 5)]
    assert sum(sizes) == 15 and max(sizes) - min(sizes) <= 1
    for bad in (["0"], ["two"], ["-1"], []):
        with pytest.raises(SystemExit) as e:
            main([str(src), *bad])
        assert e.value.code == 2
    assert "expected a positive integer, got 'two'" in capsys.readouterr().err


def test_wrapper_writes_the_same_parts_and_reports_errors(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    wrapper = REPO / "utils" / "split_data.sh"
    a = _data(tmp_path / "a" / "train")
    b = _data(tmp_path / "b" / "train")
    r = subprocess.run([str(wrapper), str(a), "2"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    main([str(b), "2"])
    assert _tree(a / "split2") == _tree(b / "split2") and len(_tree(a / "split2")) == 8
    r = subprocess.run([str(wrapper), str(a), "6"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "split_data_dir: error: " in r.stderr and "cannot split 5 speakers into 6" in r.stderr
    r = subprocess.run([str(wrapper), str(a)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "usage:" in r.stderr
