"""cdsvae.data.validate and `python -m cdsvae.bin.validate_data_dir`: a good dir passes,
each kind of broken dir is reported on its own line with file:line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _tools import run_tool
from cdsvae.data.validate import MAX_REPORTED_PER_CHECK, Problem, validate_data_dir
from cdsvae.io import UserError

REPO = Path(__file__).resolve().parents[2]

GOOD = {
    "wav.scp": "spkA-001 audio/a1.wav\nspkA-002 audio/a2.wav\nspkB-001 sox audio/b1.flac -t wav - |\n",
    "utt2spk": "spkA-001 spkA\nspkA-002 spkA\nspkB-001 spkB\n",
    "spk2utt": "spkA spkA-001 spkA-002\nspkB spkB-001\n",
    "text": "spkA-001 SHE HAD  YOUR DARK SUIT\nspkA-002\nspkB-001 DON'T ASK ME\n",
    "utt2dur": "spkA-001 2.5\nspkA-002 1.75\nspkB-001 3\n",
}


@pytest.fixture()
def good_dir(tmp_path, monkeypatch) -> Path:
    """A valid data dir; relative audio paths resolve against tmp_path (the cwd)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "audio").mkdir()
    for name in ("a1.wav", "a2.wav"):
        (tmp_path / "audio" / name).write_bytes(b"RIFF")
    d = tmp_path / "data" / "train"
    d.mkdir(parents=True)
    for name, text in GOOD.items():
        (d / name).write_text(text)
    return d


def messages(d: Path, check_audio: bool = True) -> list[str]:
    """Problems as printed, with the data dir prefix made relative for readability."""
    return [str(p).replace(f"{d}/", "") for p in validate_data_dir(d, check_audio=check_audio)]


def test_good_dir_passes(good_dir):
    assert validate_data_dir(good_dir) == []


def test_problem_formatting():
    assert str(Problem("d/utt2spk", 3, "bad")) == "d/utt2spk:3: bad"
    assert str(Problem("d/wav.scp", None, "empty file")) == "d/wav.scp: empty file"


def test_not_a_directory(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        validate_data_dir(tmp_path / "missing")


def test_unsorted(good_dir):
    (good_dir / "utt2dur").write_text("spkA-002 1.75\nspkA-001 2.5\nspkB-001 3\n")
    assert messages(good_dir) == [
        "utt2dur:2: not sorted under LC_ALL=C: 'spkA-001' comes after 'spkA-002' (sort with LC_ALL=C sort)"
    ]


def test_sorted_means_byte_order_not_locale_order(good_dir):
    # Under a dictionary locale "spkA-002" < "spkA_001" < "spkA-003"; under LC_ALL=C '-' < '_'.
    (good_dir / "utt2dur").write_text("spkA-001 1\nspkA_x 1\nspkA-002 1\nspkB-001 3\n")
    assert messages(good_dir)[0] == (
        "utt2dur:3: not sorted under LC_ALL=C: 'spkA-002' comes after 'spkA_x' (sort with LC_ALL=C sort)")


def test_duplicate_keys(good_dir):
    (good_dir / "wav.scp").write_text(GOOD["wav.scp"].replace("spkB-001 sox", "spkA-002 audio/a1.wav\nspkB-001 sox"))
    assert messages(good_dir) == ["wav.scp:3: duplicate key 'spkA-002' (first at line 2)"]


def test_spk2utt_missing_an_utterance(good_dir):
    (good_dir / "spk2utt").write_text("spkA spkA-001\nspkB spkB-001\n")
    assert messages(good_dir) == ["utt2spk:2: utterance 'spkA-002' is missing from the spk2utt line of speaker 'spkA'"]


def test_spk2utt_disagrees_with_utt2spk(good_dir):
    (good_dir / "spk2utt").write_text("spkA spkA-001\nspkB spkA-002 spkB-001\n")
    assert messages(good_dir) == [
        "spk2utt:2: utterance 'spkA-002' is listed under 'spkB' but utt2spk line 2 says 'spkA'"
    ]


def test_spk2utt_extra_utterance_and_unknown_speaker(good_dir):
    (good_dir / "spk2utt").write_text("spkA spkA-001 spkA-002 spkA-003\n")
    assert messages(good_dir) == [
        "spk2utt:1: utterance 'spkA-003' of speaker 'spkA' is not in utt2spk",
        "utt2spk:3: speaker 'spkB' of utterance 'spkB-001' is not in spk2utt",
    ]


def test_spk2utt_utterances_out_of_order(good_dir):
    (good_dir / "spk2utt").write_text("spkA spkA-002 spkA-001\nspkB spkB-001\n")
    assert messages(good_dir) == ["spk2utt:1: utterances of speaker 'spkA' are not sorted under LC_ALL=C"]


def test_utterance_not_prefixed_by_speaker(good_dir):
    (good_dir / "utt2spk").write_text("spkA-001 spkA\nspkA-002 spkA\nspkB-001 bob\n")
    (good_dir / "spk2utt").write_text("bob spkB-001\nspkA spkA-001 spkA-002\n")
    assert messages(good_dir) == ["utt2spk:3: utterance id 'spkB-001' does not start with its speaker id 'bob'"]


def test_speaker_order_must_follow_utterance_order(good_dir):
    # Prefixed ids, yet sorting by utterance ('-' < '0' < '_') does not sort the speakers.
    (good_dir / "utt2spk").write_text("s1-a s1\ns10-a s10\ns1_b s1\n")
    (good_dir / "spk2utt").write_text("s1 s1-a s1_b\ns10 s10-a\n")
    for name in ("wav.scp", "text", "utt2dur"):
        (good_dir / name).unlink()
    (good_dir / "wav.scp").write_text("s1-a audio/a1.wav\ns10-a audio/a1.wav\ns1_b audio/a2.wav\n")
    assert messages(good_dir) == [
        "utt2spk:3: speaker ids are not in order when utterances are: 's1_b' ('s1') follows 's10-a' ('s10')"
    ]


def test_wav_scp_and_utt2spk_key_sets_differ(good_dir):
    (good_dir / "wav.scp").write_text("spkA-001 audio/a1.wav\nspkA-009 audio/a2.wav\nspkB-001 x.wav |\n")
    assert messages(good_dir) == [
        "wav.scp: utterance 'spkA-002' (utt2spk line 2) has no entry",
        "wav.scp:2: utterance 'spkA-009' is not in utt2spk",
    ]


def test_text_key_set_differs(good_dir):
    (good_dir / "text").write_text("spkA-001 A\nspkB-001 B\n")
    assert messages(good_dir) == ["text: utterance 'spkA-002' (utt2spk line 2) has no entry"]


def test_units_may_leave_utterances_out(good_dir):
    (good_dir / "units").write_text("spkA-001 sh iy hh ae d\nspkB-001 d ow n t\n")
    assert messages(good_dir) == []


def test_units_unknown_utterance_empty_line_and_order(good_dir):
    (good_dir / "units").write_text("spkA-002 a b\nspkA-001 sh\nspkA-003 x\nspkB-001\n")
    assert messages(good_dir) == [
        "units:2: not sorted under LC_ALL=C: 'spkA-001' comes after 'spkA-002' (sort with LC_ALL=C sort)",
        "units:4: 'spkB-001' has no units",
        "units:3: utterance 'spkA-003' is not in utt2spk",
    ]
    (good_dir / "units").write_text("spkA-001 sh  iy\nspkA-002 sh\nspkA-002 iy\n")
    assert messages(good_dir) == [
        "units:1: expected units separated by single spaces, got 'sh  iy'",
        "units:3: duplicate key 'spkA-002' (first at line 2)",
    ]


def test_cli_names_units_file_and_line(good_dir):
    (good_dir / "units").write_text("spkA-001 sh\nspkZ-001 x\n")
    r = run_cli("data/train", cwd=good_dir.parent.parent)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stdout.splitlines() == ["data/train/units:2: utterance 'spkZ-001' is not in utt2spk"]


def test_missing_audio_file_but_pipes_are_skipped(good_dir):
    (good_dir.parent.parent / "audio" / "a2.wav").unlink()
    assert messages(good_dir) == ["wav.scp:2: audio file of 'spkA-002' not found: audio/a2.wav"]
    assert messages(good_dir, check_audio=False) == []


def test_empty_required_file(good_dir):
    (good_dir / "spk2utt").write_text("")
    out = messages(good_dir)
    assert "spk2utt: empty file" in out
    assert "utt2spk:1: speaker 'spkA' of utterance 'spkA-001' is not in spk2utt" in out


def test_missing_required_file(good_dir):
    (good_dir / "utt2spk").unlink()
    assert messages(good_dir) == ["utt2spk: required file is missing"]


@pytest.mark.parametrize("name, content, expected", [
    ("utt2spk", "spkA-001 spkA\nspkA-002 spkA extra\nspkB-001 spkB\n",
     "utt2spk:2: expected one speaker id, got 'spkA extra'"),
    ("utt2spk", "spkA-001 spkA\n\nspkA-002 spkA\nspkB-001 spkB\n", "utt2spk:2: empty line"),
    ("utt2spk", "spkA-001 spkA\n spkA-002 spkA\nspkB-001 spkB\n", "utt2spk:2: line starts with whitespace"),
    ("utt2spk", "spkA-001 spkA\nspkA-002\nspkB-001 spkB\n", "utt2spk:2: 'spkA-002' has no value"),
    ("utt2dur", "spkA-001 2.5\nspkA-002 -1\nspkB-001 3\n",
     "utt2dur:2: expected a positive duration in seconds, got '-1'"),
    ("wav.scp", "spkA-001 audio/a1.wav\nspkA-002 my file.wav\nspkB-001 x |\n",
     "wav.scp:2: expected a file path or a command ending in '|', got 'my file.wav'"),
])
def test_malformed_lines(good_dir, name, content, expected):
    (good_dir / name).write_text(content)
    assert expected in messages(good_dir)


def test_non_utf8_line(good_dir):
    (good_dir / "text").write_bytes(GOOD["text"].encode().replace(b"DON'T", b"DON\xff"))
    assert messages(good_dir) == ["text:3: not valid UTF-8", "text: utterance 'spkB-001' (utt2spk line 3) has no entry"]


def test_segments_refer_to_known_recordings(good_dir):
    (good_dir / "wav.scp").write_text("recA audio/a1.wav\n")
    (good_dir / "segments").write_text("spkA-001 recA 0.0 1.5\nspkA-002 recA 1.5 3.0\nspkB-001 recB 0 2\n")
    assert messages(good_dir) == ["segments:3: segment 'spkB-001' refers to unknown recording 'recB' (not in wav.scp)"]


def test_segment_times(good_dir):
    (good_dir / "wav.scp").write_text("recA audio/a1.wav\n")
    (good_dir / "segments").write_text("spkA-001 recA 0.0 -1\nspkA-002 recA 2.0 1.0\nspkB-001 recA 0 x\n")
    assert messages(good_dir) == [
        "segments:2: bad segment times: start 2.0, end 1.0 (need 0 <= start < end, or end -1)",
        "segments:3: expected '<recording-id> <start> <end>', got 'recA 0 x'",
        "segments: utterance 'spkA-002' (utt2spk line 2) has no entry",
        "segments: utterance 'spkB-001' (utt2spk line 3) has no entry",
    ]


def test_many_problems_are_capped(good_dir):
    n = MAX_REPORTED_PER_CHECK + 5
    (good_dir / "text").write_text("".join(f"spkZ-{i:03d} x\n" for i in range(n)) + GOOD["text"])
    out = messages(good_dir)
    extra = [m for m in out if "is not in utt2spk" in m]
    assert len(extra) == MAX_REPORTED_PER_CHECK
    assert "text: ... and 5 more problems of this kind (extra utterance)" in out


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The tool as its console script runs it, in this process (tests/_tools.py)."""
    return run_tool("validate_data_dir", *args, cwd=cwd)


def test_cli_good_dir_exits_0(good_dir):
    r = run_cli("data/train", cwd=good_dir.parent.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "validate_data_dir: data/train: OK (3 utterances, 2 speakers)"


def test_cli_bad_dir_exits_1_with_one_line_per_problem(good_dir):
    (good_dir / "utt2spk").write_text("spkA-002 spkA\nspkA-001 spkA\nspkB-001 spkB\n")
    (good_dir.parent.parent / "audio" / "a1.wav").unlink()
    r = run_cli("data/train", cwd=good_dir.parent.parent)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "data/train/utt2spk:2: not sorted under LC_ALL=C: 'spkA-001' comes after 'spkA-002' (sort with LC_ALL=C sort)",
        "data/train/wav.scp:1: audio file of 'spkA-001' not found: audio/a1.wav",
    ]
    assert "2 problem(s)" in r.stderr
    r = run_cli("--no-check-audio", "data/train", cwd=good_dir.parent.parent)
    assert r.returncode == 1
    assert len(r.stdout.splitlines()) == 1


def test_cli_missing_dir_is_one_line_error(tmp_path):
    r = run_cli("nope", cwd=tmp_path)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.strip().endswith(": error: nope: not a directory")
    assert "Traceback" not in r.stderr


def test_shell_wrapper(good_dir):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    wrapper = REPO / "utils" / "validate_data_dir.sh"
    r = subprocess.run([str(wrapper), "data/train"], capture_output=True, text=True,
                       cwd=good_dir.parent.parent, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    (good_dir / "wav.scp").write_text("")
    r = subprocess.run([str(wrapper), "--no-check-audio", "data/train"], capture_output=True, text=True,
                       cwd=good_dir.parent.parent, env=env, timeout=60)
    assert r.returncode == 1
    assert "data/train/wav.scp: empty file" in r.stdout


def test_cli_allow_missing_audio_warns_instead_of_failing(good_dir):
    root = good_dir.parent.parent
    (root / "audio" / "a2.wav").unlink()
    r = run_cli("data/train", cwd=root)
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["data/train/wav.scp:2: audio file of 'spkA-002' not found: audio/a2.wav"]

    r = run_cli("--allow-missing-audio", "data/train", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "validate_data_dir: data/train: OK (3 utterances, 2 speakers)"
    assert r.stderr.splitlines() == [
        "warning: data/train/wav.scp:2: audio file of 'spkA-002' not found: audio/a2.wav",
        "validate_data_dir: data/train: 1 audio file(s) missing; their utterances will be skipped",
    ]


def test_cli_allow_missing_audio_still_fails_on_other_problems(good_dir):
    root = good_dir.parent.parent
    (root / "audio" / "a1.wav").unlink()
    (root / "audio" / "a2.wav").unlink()
    (good_dir / "utt2spk").write_text("spkA-002 spkA\nspkA-001 spkA\nspkB-001 spkB\n")
    r = run_cli("--allow-missing-audio", "data/train", cwd=root)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "data/train/utt2spk:2: not sorted under LC_ALL=C: 'spkA-001' comes after 'spkA-002' (sort with LC_ALL=C sort)"
    ]
    assert "2 audio file(s) missing" in r.stderr and "1 problem(s)" in r.stderr
    assert r.stderr.count("warning: ") == 2
    # without missing audio the flag changes nothing
    (root / "audio" / "a1.wav").write_bytes(b"RIFF")
    (root / "audio" / "a2.wav").write_bytes(b"RIFF")
    (good_dir / "utt2spk").write_text(GOOD["utt2spk"])
    r = run_cli("--allow-missing-audio", "data/train", cwd=root)
    assert r.returncode == 0 and r.stderr == ""
