"""Stage 1 of egs/custom (local/custom_data_prep.py and local/data.sh) on small trees of tone files:
ids, splits, transcripts, skipped files and bad manifests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cdsvae.data.datadir import DataDir
from cdsvae.data.validate import validate_data_dir
from cdsvae.io import UserError

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "custom" / "cdsvae1"
VENV_BIN = Path(__file__).resolve().parents[2] / "tools" / "venv" / "bin"

spec = importlib.util.spec_from_file_location("custom_data_prep", RECIPE / "local" / "custom_data_prep.py")
prep = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = prep
spec.loader.exec_module(prep)


def tone(path: Path, seconds: float = 0.8, rate: int = 16000, channels: int = 1, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    sf.write(path, np.stack([wave] * channels, 1) if channels > 1 else wave, rate, format=fmt)
    return path


def speakers_tree(root: Path, n_spk: int = 5, n_utt: int = 4) -> Path:
    audio = root / "audio"
    for s in range(n_spk):
        for u in range(n_utt):
            tone(audio / f"spk{s}" / f"utt{u}.wav")
    return audio


def table(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) if " " in line else (line, "") for line in path.read_text().splitlines())


def test_ids_are_kaldi_safe_unique_and_speaker_prefixed_and_the_dirs_validate(tmp_path):
    audio = tmp_path / "audio"
    for speaker in ("Anna K", "anna_k", "Anna-K", "bob.smith", "zoë"):
        tone(audio / speaker / "take 1.wav")
        tone(audio / speaker / "deep" / "take 1.flac", fmt="FLAC")  # the same name in another folder
        tone(audio / speaker / "x.WAV")
    (audio / "Anna K" / "take 1.txt").write_text("Hello   there\n")
    tone(audio / "loose.wav")  # not in a speaker folder
    (audio / "bob.smith" / "notes.pdf").write_bytes(b"%PDF")
    out = tmp_path / "data"
    assert prep.main(["--audio_dir", str(audio), "--test_speakers", "2", "--dev_fraction", "0.3", str(out)]) == 0
    utt2spk = {}
    for name in prep.SETS:
        assert validate_data_dir(out / name) == [], name
        utt2spk.update(table(out / name / "utt2spk"))
    assert sorted(set(utt2spk.values())) == ["Anna_K", "Anna_K_2", "anna_k", "bob_smith", "zo_"]
    assert "Anna_K-take_1" in utt2spk and "Anna_K-take_1_2" in utt2spk and "Anna_K_2-x" in utt2spk
    assert len(utt2spk) == 15 and all(u.startswith(s + "-") for u, s in utt2spk.items())
    # a clash is resolved in path order; a file with whitespace in its path is reached through a
    # link named after its utterance
    wav = {**table(out / "train" / "wav.scp"), **table(out / "dev" / "wav.scp"), **table(out / "test" / "wav.scp")}
    assert Path(wav["Anna_K-take_1"]).resolve() == (audio / "Anna K" / "deep" / "take 1.flac").resolve()
    assert Path(wav["Anna_K-take_1_2"]).resolve() == (audio / "Anna K" / "take 1.wav").resolve()
    assert " " not in wav["Anna_K-take_1_2"] and Path(wav["bob_smith-x"]) == audio / "bob.smith" / "x.WAV"
    texts = {}
    for name in prep.SETS:
        if (out / name / "text").is_file():
            texts.update(table(out / name / "text"))
    assert texts["Anna_K-take_1_2"] == "Hello there" and texts["Anna_K-take_1"] == ""
    skipped = (out / "skipped_audio").read_text().splitlines()
    assert len(skipped) == 2 and any("loose.wav\tnot in a speaker folder" in s for s in skipped)
    assert any("notes.pdf\tnot audio of a known type" in s for s in skipped)


def test_splits_are_reproducible_unseen_speakers_or_per_speaker_utterances(tmp_path):
    audio = speakers_tree(tmp_path, n_spk=6, n_utt=5)

    def sets(*opts):
        out = tmp_path / ("data_" + "_".join(opts))
        assert prep.main(["--audio_dir", str(audio), *opts, str(out)]) == 0
        return {name: table(out / name / "utt2spk") for name in prep.SETS}

    a, b = sets("--test_speakers", "2", "--split_seed", "3"), sets("--test_speakers", "2", "--split_seed", "3")
    assert a == b
    test_spk = set(a["test"].values())
    assert len(test_spk) == 2 and not test_spk & set(a["train"].values()) and not test_spk & set(a["dev"].values())
    assert len(a["test"]) == 10 and len(a["dev"]) == 4 and len(a["train"]) == 16  # one dev utterance per speaker
    others = [sets("--test_speakers", "2", "--split_seed", str(seed))["test"] for seed in range(4, 8)]
    assert any(set(o.values()) != test_spk for o in others)  # the seed chooses the speakers
    per_utt = sets("--test_speakers", "0", "--test_fraction", "0.4", "--dev_fraction", "0.3")
    for spk in (f"spk{s}" for s in range(6)):
        counts = [sum(v == spk for v in per_utt[name].values()) for name in ("train", "dev", "test")]
        assert counts == [2, 1, 2], (spk, counts)
    with pytest.raises(UserError, match="--test_speakers 6: the corpus has 6 speaker"):
        sets("--test_speakers", "6")
    with pytest.raises(UserError, match="--test_speakers 1: speaker verification"):
        sets("--test_speakers", "1")
    with pytest.raises(UserError, match="--dev_fraction must be between 0 and 1"):
        sets("--dev_fraction", "0")


def test_unreadable_and_short_files_are_counted_and_listed_and_any_rate_or_channels_kept(tmp_path, capsys):
    audio = speakers_tree(tmp_path, n_spk=3, n_utt=3)
    tone(audio / "spk0" / "stereo.wav", rate=44100, channels=2)
    tone(audio / "spk1" / "low.flac", rate=8000, fmt="FLAC")
    tone(audio / "spk1" / "blip.wav", seconds=0.2)
    (audio / "spk2" / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    (audio / "spk2" / "empty.ogg").write_bytes(b"")
    out = tmp_path / "data"
    assert prep.main(["--audio_dir", str(audio), "--test_speakers", "0", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped 3 of 14 file(s) (too short: 1; unreadable: 2): listed in " in err
    skipped = dict(line.split("\t") for line in (out / "skipped_audio").read_text().splitlines())
    assert skipped[str(audio / "spk1" / "blip.wav")] == "too short: 0.200 s, under --min_dur 0.5 s"
    assert skipped[str(audio / "spk2" / "bad.wav")].startswith("unreadable: ")
    assert skipped[str(audio / "spk2" / "empty.ogg")].startswith("unreadable: empty audio file")
    kept = {}
    for name in prep.SETS:
        kept.update(table(out / name / "utt2dur"))
    assert float(kept["spk0-stereo"]) == pytest.approx(0.8) and float(kept["spk1-low"]) == pytest.approx(0.8)
    assert len(kept) == 11


def test_manifest_columns_relative_paths_and_errors_naming_the_line(tmp_path):
    audio = speakers_tree(tmp_path, n_spk=3, n_utt=4)
    manifest = tmp_path / "lists" / "corpus.tsv"
    manifest.parent.mkdir()
    rows = [f"../audio/spk{s}/utt{u}.wav\tS {s}\t{'hi there' if u == 0 else ''}" for s in range(3) for u in range(4)]
    manifest.write_text("path\tspeaker\ttext\n" + "\n".join(rows) + "\n")
    out = tmp_path / "data"
    assert prep.main(["--manifest", str(manifest), "--test_speakers", "0", "--test_fraction", "0.5",
                      "--dev_fraction", "0.5", str(out)]) == 0
    wav = {}
    for name in prep.SETS:
        assert validate_data_dir(out / name) == []
        wav.update(table(out / name / "wav.scp"))
    assert wav["S_1-utt0"] == str(audio / "spk1" / "utt0.wav")
    # without the text column: no text, and no units left from before
    (out / "train" / "units").write_text("S_0-utt0 a b\n")
    manifest.write_text("speaker\tpath\n" + "".join(f"S {s}\t../audio/spk{s}/utt{u}.wav\n"
                                                    for s in range(3) for u in range(4)))
    assert prep.main(["--manifest", str(manifest), "--test_speakers", "0", "--test_fraction", "0.5",
                      "--dev_fraction", "0.5", str(out)]) == 0
    for name in prep.SETS:
        assert not (out / name / "text").exists() and not (out / name / "units").exists()
        assert DataDir.load(out / name).tables.keys() == {"wav.scp", "utt2spk", "utt2dur"}
    cases = {"path\tspk\n": r"corpus.tsv:1: the header lacks the column\(s\) speaker",
             "path\tspeaker\n../audio/spk0/utt0.wav\n": r"corpus.tsv:2: 1 tab-separated field\(s\), the header has 2",
             "path\tspeaker\n\tS0\n": r"corpus.tsv:2: empty path",
             "path\tspeaker\n../audio/spk0/utt0.wav\tS0\n../audio/spk1/../spk0/utt0.wav\tS1\n":
                 r"corpus.tsv:3: ../audio/spk1/../spk0/utt0.wav is listed again \(first at line 2\)",
             "": "empty manifest"}
    for text, why in cases.items():
        manifest.write_text(text)
        with pytest.raises(UserError, match=why):
            prep.main(["--manifest", str(manifest), str(out)])
    manifest.write_bytes(b"path\tspeaker\n\xff\xfe.wav\tS0\n")
    with pytest.raises(UserError, match=r"corpus.tsv: not UTF-8 text \(byte 13\)"):
        prep.main(["--manifest", str(manifest), str(out)])
    with pytest.raises(UserError, match="--manifest .*nope.tsv: no such file"):
        prep.main(["--manifest", str(tmp_path / "nope.tsv"), str(out)])


def test_data_sh_makes_units_only_from_transcripts_and_says_so_without(tmp_path):
    audio = speakers_tree(tmp_path, n_spk=4, n_utt=3)
    words = ("one two three", "four five six", "seven eight nine")
    for s in range(4):
        for u in range(3):
            if u != 1:
                (audio / f"spk{s}" / f"utt{u}.txt").write_text(words[u] + "\n")
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    cmd = [str(RECIPE / "local" / "data.sh"), "--data_dir", str(tmp_path / "data"), "--bpe_type", "char",
           "--bpe_vocab_size", "20"]
    r = subprocess.run([*cmd, "--audio_dir", str(audio)], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    units = table(tmp_path / "data" / "train" / "units")
    assert units and all(u.endswith(("utt0", "utt2")) for u in units)
    manifest = tmp_path / "m.tsv"
    manifest.write_text("path\tspeaker\n" + "".join(f"{audio}/spk{s}/utt{u}.wav\tspk{s}\n"
                                                    for s in range(4) for u in range(3)))
    r = subprocess.run([*cmd, "--manifest", str(manifest)], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "No transcripts in " in r.stderr and not list((tmp_path / "data").glob("*/units"))
    r = subprocess.run([*cmd, "--manifest", str(manifest), "--audio_dir", str(audio)], cwd=tmp_path,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "give --audio_dir or --manifest, not both" in r.stderr
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "no corpus: give --audio_dir DIR" in r.stderr
