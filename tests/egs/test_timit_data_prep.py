"""TIMIT stage 1 (egs/timit/cdsvae1/local) on small fake trees of the LDC layout and of other copies."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cdsvae.audio import read_audio
from cdsvae.data.datadir import DataDir
from cdsvae.data.validate import validate_data_dir
from cdsvae.io import UserError

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "timit" / "cdsvae1"
DATA_SH = RECIPE / "local" / "data.sh"

spec = importlib.util.spec_from_file_location("timit_data_prep", RECIPE / "local" / "timit_data_prep.py")
prep = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = prep
spec.loader.exec_module(prep)

# (part, dr, speaker, [(utterance, num_samples)]): two train speakers, one dev, one core-test,
# and one TEST speaker on neither list.
SPEAKERS = [
    ("train", 1, "fcjf0", [("sa1", 1600), ("sa2", 1700), ("si1027", 2400), ("sx127", 2000)]),
    ("train", 2, "maeb0", [("sa1", 1650), ("sa2", 1750), ("si1411", 3000), ("sx201", 2600)]),
    ("test", 1, "faks0", [("sa1", 1800), ("sa2", 1900), ("si943", 2200), ("sx43", 2100)]),
    ("test", 1, "mdab0", [("sa1", 1500), ("sa2", 1550), ("si1039", 2700), ("sx139", 2300)]),
    ("test", 4, "mkes0", [("sa1", 1600), ("sa2", 1600), ("si623", 1600), ("sx173", 1600)]),
]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e['PATH']}"
    e["OMP_NUM_THREADS"] = "1"
    return e


def case(name: str, style: str, depth: int) -> str:
    if style == "upper":
        return name.upper()
    if style == "lower":
        return name.lower()
    return name.upper() if depth % 2 == 0 else name.lower()


def write_sphere(path: Path, num_samples: int, seed: int, fmt: str = "NIST") -> None:
    """16-bit audio in NIST SPHERE (``fmt="WAV"``: RIFF/WAVE with the same samples), whatever the name."""
    signal = np.round(np.random.default_rng(seed).normal(0, 0.1, num_samples).clip(-1, 1) * 32767)
    sf.write(path, signal.astype(np.int16), 16000, format=fmt, subtype="PCM_16")


def phn_segments(num_samples: int) -> list[tuple[int, int, str]]:
    a, b = num_samples // 4, num_samples // 2
    return [(0, a, "h#"), (a, b, "sh"), (b, num_samples, "iy")]


def make_tree(root: Path, style: str = "upper", with_phn: bool = True, riff: bool = False, twins: bool = False) -> Path:
    """An LDC-shaped TIMIT tree; ``style`` upper, lower or mixed (case alternating by depth).

    ``riff``: RIFF/WAVE content under the .WAV names; ``twins``: a RIFF ``<UTT>.WAV.wav`` with the
    same samples beside every .WAV, as in a widely shared copy.
    """
    for i, (part, dr, spk, utts) in enumerate(SPEAKERS):
        folder = root / case(part, style, 0) / case(f"dr{dr}", style, 1) / case(spk, style, 2)
        folder.mkdir(parents=True)
        for j, (utt, n) in enumerate(utts):
            stem = case(utt, style, 3 + j)
            ext = (lambda e: case(e, style, 4 + j))
            write_sphere(folder / f"{stem}.{ext('wav')}", n, seed=10 * i + j, fmt="WAV" if riff else "NIST")
            if twins:
                write_sphere(folder / f"{stem}.{ext('wav')}.wav", n, seed=10 * i + j, fmt="WAV")
            (folder / f"{stem}.{ext('txt')}").write_text(f"0 {n} Words of {spk} saying {utt}.\n")
            (folder / f"{stem}.{ext('wrd')}").write_text(f"0 {n} words\n")
            if with_phn:
                (folder / f"{stem}.{ext('phn')}").write_text(
                    "".join(f"{s} {e} {p}\n" for s, e, p in phn_segments(n)))
    return root


def run_data_sh(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(DATA_SH), *args], cwd=cwd, env=env(), capture_output=True, text=True)


@pytest.mark.parametrize("style", ["upper", "lower", "mixed"])
def test_sets_speakers_and_sa_exclusion(tmp_path, style):
    root = make_tree(tmp_path / "timit", style)
    res = run_data_sh(tmp_path, "--timit_root", str(root), "--data_dir", str(tmp_path / "data"))
    assert res.returncode == 0, res.stderr
    sets = {name: DataDir.load(tmp_path / "data" / name) for name in ("train", "dev", "test")}
    assert sets["train"].speakers == ["fcjf0", "maeb0"]
    assert sets["dev"].speakers == ["faks0"]
    assert sets["test"].speakers == ["mdab0"]
    assert sets["test"].utterances == ["mdab0_si1039", "mdab0_sx139"]
    for d in sets.values():
        assert not any("_sa" in u for u in d.utterances)
        assert all(u.startswith(d.utt2spk[u] + "_") for u in d.utterances)
        assert validate_data_dir(d.path) == []
    assert "excluded: 8" in res.stderr and "unused): 1" in res.stderr
    assert sets["train"].text["fcjf0_si1027"] == "Words of fcjf0 saying si1027."


def test_include_sa_keeps_them(tmp_path):
    root = make_tree(tmp_path / "timit")
    res = run_data_sh(tmp_path, "--timit_root", str(root), "--include_sa", "true")
    assert res.returncode == 0, res.stderr
    test = DataDir.load(tmp_path / "data" / "test")
    assert test.utterances == ["mdab0_sa1", "mdab0_sa2", "mdab0_si1039", "mdab0_sx139"]


def test_utt2dur_wav_scp_and_phones(tmp_path):
    root = make_tree(tmp_path / "timit")
    assert run_data_sh(tmp_path, "--timit_root", str(root)).returncode == 0
    expected = {f"{spk}_{u}": n for _, _, spk, utts in SPEAKERS if spk != "mkes0"
                for u, n in utts if not u.startswith("sa")}
    phone_lines = []
    for name in ("train", "dev", "test"):
        d = DataDir.load(tmp_path / "data" / name)
        for utt, dur in d.utt2dur.items():
            assert dur == pytest.approx(expected[utt] / 16000, abs=1e-9)
            audio, rate = sf.read(d.wav_scp[utt])
            assert (len(audio), rate) == (expected[utt], 16000)
        phone_lines += (tmp_path / "data" / name / "phones").read_text().splitlines()
        got = [line.split()[0] for line in (tmp_path / "data" / name / "phones").read_text().splitlines()]
        assert got == sorted(got, key=str.encode)
    by_utt: dict[str, list[tuple[float, float, str]]] = {}
    for line in phone_lines:
        utt, start, end, phone = line.split()
        by_utt.setdefault(utt, []).append((float(start), float(end), phone))
    assert set(by_utt) == set(expected)
    for utt, segs in by_utt.items():
        want = [(s / 16000, e / 16000, p) for s, e, p in phn_segments(expected[utt])]
        assert [p for _, _, p in segs] == [p for _, _, p in want]
        np.testing.assert_allclose([s for s, _, _ in segs], [s for s, _, _ in want], atol=1e-7)
        np.testing.assert_allclose([e for _, e, _ in segs], [e for _, e, _ in want], atol=1e-7)


def test_units_hold_the_61_phones_in_order(tmp_path):
    root = make_tree(tmp_path / "timit")
    (root / "TRAIN" / "DR1" / "FCJF0" / "SI1027.PHN").write_text("0 100 h#\n100 900 dcl\n900 2000 pau\n"
                                                                  "2000 2400 h#\n")
    assert run_data_sh(tmp_path, "--timit_root", str(root)).returncode == 0
    for name in ("train", "dev", "test"):
        d = DataDir.load(tmp_path / "data" / name)
        lines = (tmp_path / "data" / name / "units").read_text().splitlines()
        assert [line.split()[0] for line in lines] == d.utterances
        for line in lines:
            utt, *units = line.split(" ")
            want = ["h#", "dcl", "pau", "h#"] if utt == "fcjf0_si1027" else ["h#", "sh", "iy"]
            assert units == want, line  # unfolded: h#, pau stay, no 39-phone mapping
        assert d.tables["units"] == {u: " ".join(["h#", "dcl", "pau", "h#"] if u == "fcjf0_si1027"
                                                 else ["h#", "sh", "iy"]) for u in d.utterances}


def test_untimed_phones_file_gives_units_and_phn_wins(tmp_path):
    root = make_tree(tmp_path / "timit", with_phn=False)
    spk = root / "TRAIN" / "DR1" / "FCJF0"
    (spk / "SI1027.PHONES").write_text("h# w er dx  ax h#\n")
    (spk / "SX127.PHONES").write_text("h# s ey h#\n")
    (spk / "SX127.PHN").write_text("0 1000 h#\n1000 2000 b\n")
    res = run_data_sh(tmp_path, "--timit_root", str(root))
    assert res.returncode == 0, res.stderr
    train = tmp_path / "data" / "train"
    assert (train / "units").read_text() == "fcjf0_si1027 h# w er dx ax h#\nfcjf0_sx127 h# b\n"
    # timed phones only from the .PHN; utterances with neither file are left out of units
    assert [line.split()[0] for line in (train / "phones").read_text().splitlines()] == ["fcjf0_sx127"] * 2
    assert "1 with units from .PHONES, 2 without units" in res.stderr
    assert not (tmp_path / "data" / "test" / "units").exists()
    assert validate_data_dir(train) == []

    (spk / "SI1027.PHONES").write_text("h# w\nax h#\n")
    res = run_data_sh(tmp_path, "--timit_root", str(root))
    assert res.returncode != 0 and "SI1027.PHONES: expected one line of phones" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_phn_is_tolerated_and_counted(tmp_path):
    root = make_tree(tmp_path / "timit", with_phn=False)
    res = run_data_sh(tmp_path, "--timit_root", str(root))
    assert res.returncode == 0, res.stderr
    assert "train: 2 speakers, 4 utterances" in res.stderr and "4 without .PHN" in res.stderr
    assert not (tmp_path / "data" / "train" / "phones").exists()
    assert not (tmp_path / "data" / "train" / "units").exists()


@pytest.mark.parametrize("make_root", [
    lambda p: p / "nowhere",
    lambda p: (p / "empty").mkdir() or p / "empty",
    lambda p: (p / "flat" / "TRAIN").mkdir(parents=True) or (p / "flat" / "TEST").mkdir() or p / "flat",
])
def test_missing_or_wrong_root_is_one_line(tmp_path, make_root):
    root = make_root(tmp_path)
    res = run_data_sh(tmp_path, "--timit_root", str(root))
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in res.stderr
    assert f"TIMIT={root}" in errors[0] and "expected TRAIN/ and TEST/ (or train/ test/) with DR1..DR8" in errors[0]


def test_unset_root_names_db_sh(tmp_path):
    e = env()
    e.pop("TIMIT", None)
    res = subprocess.run(["bash", str(DATA_SH)], cwd=tmp_path, env=e, capture_output=True, text=True)
    assert res.returncode == 1 and "TIMIT is not set: set it in db.sh" in res.stderr


def test_truncated_file_is_named_or_skipped(tmp_path):
    root = make_tree(tmp_path / "timit")
    bad = root / "TRAIN" / "DR1" / "FCJF0" / "SI1027.WAV"
    bad.write_bytes(bad.read_bytes()[:1500])
    res = run_data_sh(tmp_path, "--timit_root", str(root))
    assert res.returncode == 1 and f"{bad}: truncated" in res.stderr and "Traceback" not in res.stderr
    res = run_data_sh(tmp_path, "--timit_root", str(root), "--skip_bad", "true")
    assert res.returncode == 0, res.stderr
    assert "bad utterances skipped: 1" in res.stderr
    assert DataDir.load(tmp_path / "data" / "train").utterances == ["fcjf0_sx127", "maeb0_si1411", "maeb0_sx201"]


def test_help_and_unknown_option(tmp_path):
    res = run_data_sh(tmp_path, "--help")
    assert res.returncode == 0 and "--include_sa" in res.stdout
    res = run_data_sh(tmp_path, "--no_such_option", "1")
    assert res.returncode == 2 and "Usage" in res.stderr


def test_header_sample_rate_is_checked(tmp_path):
    """The prep reads a SPHERE file's rate from its header (cdsvae.audio.read_sphere_header) and checks it."""
    body = np.arange(100, dtype="<i2").tobytes()
    fields = ("database_id -s5 TIMIT\nsample_count -i 100\nsample_rate -i 08000\nchannel_count -i 1\n"
              "sample_byte_format -s2 01\nsample_n_bytes -i 2\nsample_sig_bits -i 16\nend_head\n")
    (tmp_path / "c.wav").write_bytes(f"NIST_1A\n   1024\n{fields}".encode().ljust(1024, b" ") + body)
    with pytest.raises(UserError, match="sample rate 8000 Hz, expected 16000"):
        prep.fill(prep.Utterance("x", "si1", tmp_path / "c.wav", None, None), 16000)


def test_speaker_lists_are_the_standard_ones():
    dev = (RECIPE / "conf" / "dev_spk.list").read_text().split()
    test = (RECIPE / "conf" / "test_spk.list").read_text().split()
    assert len(dev) == len(set(dev)) == 50 and len(test) == len(set(test)) == 24
    assert not set(dev) & set(test)
    # The core test set: two male and one female speaker from each of the eight dialect regions.
    assert sum(s.startswith("m") for s in test) == 16
    assert {"mdab0", "mwbt0", "felc0", "mjln0", "mpam0", "fmld0"} <= set(test)


def test_rerun_keeps_unchanged_files_and_drops_stale_tables(tmp_path):
    root = make_tree(tmp_path / "timit")
    assert run_data_sh(tmp_path, "--timit_root", str(root)).returncode == 0
    train = tmp_path / "data" / "train"
    (train / "utt2num_frames").write_text("".join(f"{u} 10\n" for u in DataDir.load(train).utterances))
    before = {p.name: p.stat().st_mtime_ns for p in train.iterdir()}
    assert run_data_sh(tmp_path, "--timit_root", str(root)).returncode == 0
    assert {p.name: p.stat().st_mtime_ns for p in train.iterdir()} == before

    res = run_data_sh(tmp_path, "--timit_root", str(root), "--include_sa", "true")
    assert res.returncode == 0, res.stderr
    assert not (train / "utt2num_frames").exists()
    assert "fcjf0_sa1" in DataDir.load(train).utterances


def test_shorten_sphere_goes_through_sph2pipe(tmp_path, monkeypatch):
    fields = ("sample_count -i 16000\nsample_rate -i 16000\nchannel_count -i 1\nsample_n_bytes -i 2\n"
              "sample_coding -s26 pcm,embedded-shorten-v2.00\nend_head\n")
    wav = tmp_path / "si1.wav"
    wav.write_bytes(f"NIST_1A\n   1024\n{fields}".encode().ljust(1024, b" ") + bytes(500))
    (tmp_path / "si1.txt").write_text("0 16000 Hello.\n")
    utt = prep.Utterance("x", "si1", wav, tmp_path / "si1.txt", None)
    monkeypatch.setattr(prep.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="shorten-compressed SPHERE needs sph2pipe"):
        prep.fill(utt, 16000)
    monkeypatch.setattr(prep.shutil, "which", lambda name: f"/opt/kaldi/tools/{name}")
    prep.fill(utt, 16000)
    assert utt.wav_entry == f"sph2pipe -f wav {wav.absolute()} |" and utt.num_samples == 16000


def prepare(tmp_path: Path, root: Path, tag: str):
    """Stage 1 (SA kept) on ``root`` into ``tmp_path/tag``: (stderr, tables but wav.scp, audio by utt, wav.scp)."""
    res = run_data_sh(tmp_path, "--timit_root", str(root), "--data_dir", str(tmp_path / tag), "--include_sa", "true")
    assert res.returncode == 0, res.stderr
    tables, audio, wav_scp = {}, {}, {}
    for name in ("train", "dev", "test"):
        d = tmp_path / tag / name
        tables.update({f"{name}/{f.name}": f.read_text() for f in sorted(d.iterdir()) if f.name != "wav.scp"})
        wav_scp.update(DataDir.load(d).wav_scp)
    for utt, entry in wav_scp.items():
        audio[utt] = read_audio(entry, utt)
    return res.stderr, tables, audio, wav_scp


def ldc_disc(base: Path) -> tuple[Path, Path]:
    """(a) The LDC tree, lower-case, kept under TIMIT/ as on the disc; db.sh names the disc's top."""
    return make_tree(base / "disc" / "TIMIT", "lower"), base / "disc"


def twin_copy(base: Path, data_level: bool) -> tuple[Path, Path]:
    """(b) SPHERE .WAV with a RIFF .WAV.wav twin each, one .WAV missing; with or without an extra data/ level."""
    top = base / "copy"
    tree = make_tree(top / "data" if data_level else top, twins=True)
    (tree / "TRAIN" / "DR1" / "FCJF0" / "SI1027.WAV").unlink()
    (top / "train_data.csv").write_text("a listing beside the tree\n")
    return tree, top


def riff_copy(base: Path) -> tuple[Path, Path]:
    """(c) RIFF/WAVE content under the .WAV names."""
    tree = make_tree(base / "riff", riff=True)
    return tree, tree


VARIANTS = {
    "a_ldc_disc": ldc_disc,
    "b_twins": lambda base: twin_copy(base, data_level=False),
    "b_twins_under_data": lambda base: twin_copy(base, data_level=True),
    "c_riff_as_wav": riff_copy,
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_copy_prepares_the_same_data_dirs(tmp_path, variant):
    _, want_tables, want_audio, _ = prepare(tmp_path, make_tree(tmp_path / "ldc"), "want")
    tree, root = VARIANTS[variant](tmp_path)
    log, tables, audio, wav_scp = prepare(tmp_path, root, "got")
    # Same utterances, speakers, texts, durations and phones; wav.scp differs only in the paths.
    assert tables == want_tables
    assert sorted(audio) == sorted(want_audio) and len(audio) == 16
    for utt, (wave, rate) in audio.items():
        assert rate == want_audio[utt][1] == 16000
        np.testing.assert_array_equal(wave, want_audio[utt][0])
    if root != tree:
        assert f"using {tree}, the one directory below it" in log
    if variant.startswith("b_"):
        # One file per utterance: the .WAV, or its .WAV.wav twin where the .WAV is missing.
        assert wav_scp["fcjf0_si1027"] == str(tree / "TRAIN" / "DR1" / "FCJF0" / "SI1027.WAV.wav")
        assert all(e.endswith(".WAV") for u, e in wav_scp.items() if u != "fcjf0_si1027")
        assert "copies left unused (the .WAV beside each was read): 15" in log
    if variant == "c_riff_as_wav":
        assert all(Path(e).read_bytes()[:4] == b"RIFF" and e.endswith(".WAV") for e in wav_scp.values())


@pytest.mark.parametrize("layout", ["two_trees", "below_train_test"])
def test_wrong_level_names_the_directory_for_db_sh(tmp_path, layout):
    if layout == "two_trees":
        # the LDC tree and a copy's data/ side by side: either could be meant
        make_tree(tmp_path / "corpora" / "TIMIT")
        make_tree(tmp_path / "corpora" / "data", twins=True)
        root = tmp_path / "corpora"
        want = (f"TIMIT={root}: 2 directories below it hold TRAIN/ and TEST/: {root / 'TIMIT'} and {root / 'data'}; "
                "set TIMIT in db.sh to the one to use")
    else:
        root = make_tree(tmp_path / "timit") / "TRAIN"
        want = f"TIMIT={root} is one part of the corpus (it holds the DR folders): set TIMIT in db.sh to {root.parent},"
    res = run_data_sh(tmp_path, "--timit_root", str(root))
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in res.stderr
    assert want in errors[0]
    assert not (tmp_path / "data").exists()


def test_riff_wav_is_read_by_its_header(tmp_path):
    """A .WAV holding RIFF/WAVE is no longer 'not a NIST SPHERE file'; an unknown header is named."""
    wav, txt = tmp_path / "SI1.WAV", tmp_path / "SI1.TXT"
    write_sphere(wav, 777, seed=0, fmt="WAV")
    txt.write_text("0 777 Hello.\n")
    utt = prep.Utterance("x", "si1", wav, txt, None)
    prep.fill(utt, 16000)
    assert (utt.num_samples, utt.sample_rate, utt.wav_entry, utt.text) == (777, 16000, str(wav.absolute()), "Hello.")

    (tmp_path / "SI2.WAV").write_bytes(b"\x00\x01junk" * 200)
    with pytest.raises(UserError, match="unknown audio format") as e:
        prep.fill(prep.Utterance("x", "si2", tmp_path / "SI2.WAV", txt, None), 16000)
    assert str(tmp_path / "SI2.WAV") in str(e.value) and "\n" not in str(e.value)
