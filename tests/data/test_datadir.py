"""cdsvae.data.datadir: Kaldi table I/O, DataDir, split and merge."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdsvae.data.datadir import (
    DataDir,
    _contiguous_split,
    iter_table_lines,
    merge_data_dirs,
    read_scp,
    read_spk2utt,
    read_utt2spk,
    split_data_dir,
    spk2utt_to_utt2spk,
    utt2spk_to_spk2utt,
    write_scp,
    write_spk2utt,
)
from cdsvae.data.validate import validate_data_dir
from cdsvae.io import UserError


def make_data_dir(root: Path, speakers: dict[str, int], with_segments: bool = False) -> Path:
    """A valid data dir written by hand (not by the code under test), sorted with LC_ALL=C."""
    root.mkdir(parents=True, exist_ok=True)
    utts = sorted((f"{spk}-u{i:02d}", spk) for spk, n in speakers.items() for i in range(n))
    utts.sort(key=lambda x: x[0].encode())
    lines = {name: [] for name in ("wav.scp", "utt2spk", "text", "utt2dur", "utt2num_frames", "feats.scp", "segments")}
    for k, (utt, spk) in enumerate(utts):
        lines["utt2spk"].append(f"{utt} {spk}")
        lines["text"].append(f"{utt} THE  QUICK {k}  fox")
        lines["utt2dur"].append(f"{utt} {1.25 + k:.2f}")
        lines["utt2num_frames"].append(f"{utt} {100 + k}")
        lines["feats.scp"].append(f"{utt} dump/feats.ark:{1000 * k + 7}")
        if with_segments:
            lines["segments"].append(f"{utt} rec-{spk} {k:.2f} {k + 1:.2f}")
        else:
            lines["wav.scp"].append(f"{utt} sox audio/{utt}.flac -t wav - |")
    if with_segments:
        lines["wav.scp"] = sorted({f"rec-{spk} audio/rec-{spk}.wav" for spk in speakers}, key=str.encode)
    else:
        del lines["segments"]
    for name, content in lines.items():
        (root / name).write_text("".join(line + "\n" for line in content))
    spk2utt = []
    for spk in sorted(speakers, key=str.encode):
        spk2utt.append(spk + " " + " ".join(u for u, s in utts if s == spk))
    (root / "spk2utt").write_text("".join(line + "\n" for line in spk2utt))
    return root


def file_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_read_scp_keeps_the_whole_rest_of_line(tmp_path):
    p = tmp_path / "text"
    p.write_text("u1 HELLO   big\tWORLD \nu2\tpipe cmd a.wav |\n")
    assert read_scp(p) == {"u1": "HELLO   big\tWORLD ", "u2": "pipe cmd a.wav |"}


def test_read_scp_errors_name_file_and_line(tmp_path):
    p = tmp_path / "utt2spk"
    p.write_text("a s\nb s\na t\n")
    with pytest.raises(UserError, match=r"utt2spk:3: duplicate key 'a' \(first at line 1\)"):
        read_scp(p)
    p.write_text("a s\nb\n")
    with pytest.raises(UserError, match=r"utt2spk:2: key 'b' has no value"):
        read_scp(p)
    p.write_text("a s\n\nb s\n")
    with pytest.raises(UserError, match=r"utt2spk:2: empty line"):
        read_scp(p)
    p.write_bytes(b"a s\nb \xff\n")
    with pytest.raises(UserError, match=r"utt2spk:2: not valid UTF-8"):
        read_scp(p)


def test_line_problems_can_be_collected_instead_of_raised(tmp_path):
    p = tmp_path / "utt2spk"
    p.write_bytes(b"a s\n\n b s\nc\nd \xff\ne  t u \n")
    problems = []
    assert list(iter_table_lines(p, problems)) == [(1, "a", "s"), (4, "c", None), (6, "e", "t u ")]
    assert problems == [(2, "empty line"), (3, "line starts with whitespace"), (5, "not valid UTF-8")]


def test_read_utt2spk(tmp_path):
    (tmp_path / "utt2spk").write_text("a_1 a\n")
    assert read_utt2spk(tmp_path / "utt2spk") == {"a_1": "a"}
    with pytest.raises(UserError, match="nope/utt2spk: utt2spk not found"):
        read_utt2spk(tmp_path / "nope" / "utt2spk")


def test_empty_transcript_allowed_only_when_asked(tmp_path):
    p = tmp_path / "text"
    p.write_text("a\nb words\n")
    assert read_scp(p, allow_empty_value=True) == {"a": "", "b": "words"}
    write_scp(tmp_path / "out", {"b": "words", "a": ""})
    assert (tmp_path / "out").read_text() == "a\nb words\n"


def test_write_scp_sorts_like_lc_all_c_sort(tmp_path):
    keys = ["b", "B", "a-1", "a_1", "a1", "a", "Z9", "_x", "é", "e", "a.b", "A~", "10", "9"]
    table = {k: f"v {i}" for i, k in enumerate(keys)}
    write_scp(tmp_path / "t.scp", table)
    written = (tmp_path / "t.scp").read_bytes()
    expected = subprocess.run(["sort"], input=written, capture_output=True, env={**os.environ, "LC_ALL": "C"},
                              check=True).stdout
    assert written == expected
    # The same order by plain byte comparison, written as a loop.
    lines = written.split(b"\n")[:-1]
    for prev, cur in zip(lines, lines[1:]):
        assert prev.split(b" ")[0] < cur.split(b" ")[0]
    assert read_scp(tmp_path / "t.scp") == table


def test_write_scp_is_atomic_on_error(tmp_path):
    p = tmp_path / "wav.scp"
    p.write_text("old a.wav\n")
    with pytest.raises(UserError, match="invalid key"):
        write_scp(p, {"ok": "x", "bad key": "y"})
    assert p.read_text() == "old a.wav\n"
    assert [q.name for q in tmp_path.iterdir()] == ["wav.scp"]


def test_utt2spk_spk2utt_conversion(tmp_path):
    utt2spk = {"s2-b": "s2", "s1-a": "s1", "s2-a": "s2", "s10-a": "s10"}
    spk2utt = utt2spk_to_spk2utt(utt2spk)
    assert spk2utt == {"s1": ["s1-a"], "s10": ["s10-a"], "s2": ["s2-a", "s2-b"]}
    assert list(spk2utt) == ["s1", "s10", "s2"]
    assert spk2utt_to_utt2spk(spk2utt) == dict(sorted(utt2spk.items()))
    with pytest.raises(UserError, match="belongs to two speakers"):
        spk2utt_to_utt2spk({"a": ["u"], "b": ["u"]})
    write_spk2utt(tmp_path / "spk2utt", spk2utt)
    assert (tmp_path / "spk2utt").read_text() == "s1 s1-a\ns10 s10-a\ns2 s2-a s2-b\n"
    assert read_spk2utt(tmp_path / "spk2utt") == spk2utt


def test_datadir_load_save_round_trip_is_exact(tmp_path):
    src = make_data_dir(tmp_path / "src", {"spkA": 3, "spkB": 2, "spk_c": 1})
    data = DataDir.load(src)
    assert data.utterances == sorted(read_scp(src / "utt2spk"), key=str.encode)
    assert data.speakers == ["spkA", "spkB", "spk_c"]
    assert data.utt2dur["spkA-u00"] == pytest.approx(1.25)
    assert data.utt2num_frames["spkA-u01"] == 101
    assert data.text["spkA-u00"] == "THE  QUICK 0  fox"
    assert "segments" not in data and "feats.scp" in data and "spk2utt" in data
    data.save(tmp_path / "copy")
    assert file_bytes(tmp_path / "copy") == file_bytes(src)


def test_numeric_table_error_names_key(tmp_path):
    src = make_data_dir(tmp_path / "src", {"s": 2})
    (src / "utt2dur").write_text("s-u00 1.0\ns-u01 long\n")
    with pytest.raises(UserError, match=r"utt2dur: 's-u01': expected a float, got 'long'"):
        DataDir.load(src).utt2dur


def test_spk2utt_is_derived_when_absent(tmp_path):
    src = make_data_dir(tmp_path / "src", {"a": 2, "b": 1})
    (src / "spk2utt").unlink()
    data = DataDir.load(src)
    assert data.spk2utt == {"a": ["a-u00", "a-u01"], "b": ["b-u00"]}


@pytest.mark.parametrize("weights, n, expected", [
    ([1] * 10, 3, [(0, 3), (3, 7), (7, 10)]),
    ([5, 1, 1, 1, 1, 1], 2, [(0, 1), (1, 6)]),
    ([1, 1, 1], 3, [(0, 1), (1, 2), (2, 3)]),
    ([9, 1, 1], 3, [(0, 1), (1, 2), (2, 3)]),
])
def test_contiguous_split_known_answers(weights, n, expected):
    assert _contiguous_split(weights, n) == expected


def test_contiguous_split_against_brute_force_optimum():
    # Brute force over every way to cut the sequence into n non-empty runs.
    for weights in ([3, 1, 4, 1, 5, 9, 2, 6], [1, 1, 1, 1, 20, 1, 1], [2] * 7):
        for n in range(1, len(weights) + 1):
            runs = _contiguous_split(weights, n)
            assert runs[0][0] == 0 and runs[-1][1] == len(weights)
            assert all(a < b for a, b in runs) and all(r[1] == s[0] for r, s in zip(runs, runs[1:]))
            best = min(
                max(sum(weights[a:b]) for a, b in zip((0,) + cut, cut + (len(weights),)))
                for cut in itertools.combinations(range(1, len(weights)), n - 1)
            )
            ours = max(sum(weights[a:b]) for a, b in runs)
            assert ours <= max(2 * best, best + max(weights))


def test_split_by_speaker_and_merge_round_trip(tmp_path):
    speakers = {"f01": 4, "f02": 3, "m01": 5, "m02": 1, "m03": 2}
    src = make_data_dir(tmp_path / "data" / "train", speakers)
    original = file_bytes(src)
    parts = split_data_dir(src, 3)
    assert parts == [src / "split3" / str(k) for k in (1, 2, 3)]
    seen_speakers: set[str] = set()
    for part in parts:
        assert validate_data_dir(part, check_audio=False) == []
        part_speakers = set(read_scp(part / "utt2spk").values())
        assert not part_speakers & seen_speakers, "a speaker was split across parts"
        seen_speakers |= part_speakers
        # Every utterance of each of its speakers is in the part.
        assert sum(speakers[s] for s in part_speakers) == len(read_scp(part / "utt2spk"))
    assert seen_speakers == set(speakers)
    merge_data_dirs(parts, tmp_path / "merged")
    assert file_bytes(tmp_path / "merged") == original
    assert file_bytes(src) == original


def test_split_by_utterance_balances_counts_and_round_trips(tmp_path):
    src = make_data_dir(tmp_path / "d", {"a": 5, "b": 6})
    parts = split_data_dir(src, 4, out_root=tmp_path / "out", by="utterance")
    assert parts[0] == tmp_path / "out" / "split4utt" / "1"
    sizes = [len(read_scp(p / "utt2spk")) for p in parts]
    assert sum(sizes) == 11 and max(sizes) - min(sizes) <= 1
    for p in parts:
        assert validate_data_dir(p, check_audio=False) == []
    merge_data_dirs(parts, tmp_path / "merged")
    assert file_bytes(tmp_path / "merged") == file_bytes(src)


def test_split_with_segments_keeps_the_recordings_of_each_part(tmp_path):
    src = make_data_dir(tmp_path / "d", {"a": 2, "b": 3, "c": 1}, with_segments=True)
    parts = split_data_dir(src, 3)
    for p in parts:
        recordings = {v.split()[0] for v in read_scp(p / "segments").values()}
        assert set(read_scp(p / "wav.scp")) == recordings
        assert validate_data_dir(p, check_audio=False) == []
    merge_data_dirs(parts, tmp_path / "merged")
    assert file_bytes(tmp_path / "merged") == file_bytes(src)


def test_split_errors(tmp_path):
    src = make_data_dir(tmp_path / "d", {"a": 2, "b": 1})
    with pytest.raises(UserError, match="cannot split 2 speakers into 3 parts"):
        split_data_dir(src, 3)
    with pytest.raises(UserError, match="by must be"):
        split_data_dir(src, 2, by="recording")
    with pytest.raises(UserError, match="not a data directory"):
        split_data_dir(tmp_path / "nope", 2)


def test_merge_conflicting_values_is_an_error(tmp_path):
    a = make_data_dir(tmp_path / "a", {"s1": 2})
    b = make_data_dir(tmp_path / "b", {"s1": 1, "s2": 1})
    (b / "utt2dur").write_text("s1-u00 9.00\ns2-u00 2.25\n")
    with pytest.raises(UserError, match=r"b/utt2dur: key 's1-u00' differs from .*a/utt2dur: '9.00' vs '1.25'"):
        merge_data_dirs([a, b], tmp_path / "m")


def test_merge_skips_tables_missing_from_some_inputs(tmp_path):
    a = make_data_dir(tmp_path / "a", {"s1": 2})
    b = make_data_dir(tmp_path / "b", {"s2": 2})
    (b / "text").unlink()
    merged = merge_data_dirs([a, b], tmp_path / "m")
    assert not (tmp_path / "m" / "text").exists()
    assert merged.utterances == ["s1-u00", "s1-u01", "s2-u00", "s2-u01"]
    assert validate_data_dir(tmp_path / "m", check_audio=False) == []


def test_split_data_sh_wrapper(tmp_path):
    src = make_data_dir(tmp_path / "d", {"a": 2, "b": 2})
    script = Path(__file__).resolve().parents[2] / "utils" / "split_data.sh"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run([str(script), str(src), "2"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert read_scp(src / "split2" / "2" / "utt2spk") == {"b-u00": "b", "b-u01": "b"}
    r = subprocess.run([str(script), str(src), "5"], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == f"split_data_dir: error: {src}: cannot split 2 speakers into 5 parts"
