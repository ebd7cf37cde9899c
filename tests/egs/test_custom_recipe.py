"""egs/custom, the worked example of the README's "Your own data", with tiny settings: a corpus of
espeak-ng voices in speaker folders (one stereo 44.1 kHz file, one 8 kHz file, one too short, one
not audio, transcripts beside half of the files) through all seven stages from --audio_dir, then
from a manifest with and without a text column; the packed model converts the stereo file; and two
stage-4 runs on one experiment at once.

The runs share one recipe tree, in this order (custom_runs, made once, in the background): the
manifest gives every file the id --audio_dir gave it, so its stages 2-4 find their outputs up to
date, as a rerun does.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile as sf
import torch

import _shared_runs
from _custom_corpus import make_corpus, write_manifest
from _recipes import TINY_JUDGES, make_tree, run_recipe, table_rows

TINY = ("--nj", "1", "--train_configs", "conf/train.yaml", "--judge_conf", "conf/judges_tiny.yaml",
        "--bpe_vocab_size", "40", "--norm_max_utts", "8",
        "--train_args", "--train.epochs 1 --train.max_steps 3 --train.batch_size 8 --data.segments_per_utt 2")


def data_files(rdir: Path) -> dict[Path, bytes]:
    return {p.relative_to(rdir): p.read_bytes() for p in (rdir / "data").rglob("*") if p.is_file()}


@dataclass(frozen=True)
class CustomRuns:
    """The runs on one recipe tree, in order: ``audio_dir`` (all seven stages; ``first``, a copy of
    the data dirs, the feature lists and the judges as it left them), stage 1 again from a manifest
    with a text column (the data files before and after it), then ``manifest`` without text."""

    rdir: Path
    corpus: Path
    special: dict[str, Path]
    audio_dir: subprocess.CompletedProcess
    first: Path
    data_before: dict[Path, bytes]
    data_after: dict[Path, bytes]
    manifest: subprocess.CompletedProcess


def custom_runs(root: Path) -> CustomRuns:
    (root / "tree").mkdir()
    corpus, special = root / "corpus", make_corpus(root / "corpus")
    rdir = make_tree(root / "tree", "custom")
    (rdir / "conf" / "judges_tiny.yaml").write_text(TINY_JUDGES)
    audio_dir = run_recipe(rdir, "--audio_dir", str(corpus / "audio"), "--test_speakers", "2", *TINY)
    first = root / "first"
    shutil.copytree(rdir / "data", first / "data")
    shutil.copytree(rdir / "dump", first / "dump", ignore=shutil.ignore_patterns("*.ark", "data", "log"))
    shutil.copytree(rdir / "exp" / "judge", first / "exp" / "judge", ignore=shutil.ignore_patterns("*.pt", "log"))
    before = data_files(rdir)
    run_recipe(rdir, "--manifest", str(write_manifest(corpus, corpus / "audio", with_text=True)), "--stop_stage", "1",
               "--test_speakers", "2", "--bpe_vocab_size", "40")
    after = data_files(rdir)
    manifest = run_recipe(rdir, "--manifest", str(write_manifest(corpus, corpus / "audio", with_text=False)),
                          "--test_speakers", "2", *TINY)
    return CustomRuns(rdir, corpus, special, audio_dir, first, before, after, manifest)


# Made in the background while the rest of the suite runs (tests/_shared_runs.py).
_shared_runs.register("custom_recipe", custom_runs)


@pytest.fixture(scope="session")
def custom_recipe(tmp_path_factory) -> CustomRuns:
    return _shared_runs.result("custom_recipe", tmp_path_factory.mktemp)


def test_audio_dir_runs_the_seven_stages_and_prints_the_eer_and_disentanglement_tables(custom_recipe):
    first, special, run = custom_recipe.first, custom_recipe.special, custom_recipe.audio_dir
    log = run.stderr
    for n in range(1, 8):
        assert re.search(rf"Stage {n}: ", log), f"stage {n} did not run"
    assert "Successfully finished." in log and "Content is not judged" not in log
    # the two files that cannot be used are counted on the console and listed with their reason
    assert "skipped 2 of 26 file(s) (unreadable: 1; too short: 1): listed in data/skipped_audio" in log
    skipped = dict(line.split("\t") for line in (first / "data" / "skipped_audio").read_text().splitlines())
    assert skipped[str(special["short"])].startswith("too short: 0.100 s")
    assert skipped[str(special["junk"])].startswith("unreadable: unknown audio format")
    # the stereo 44.1 kHz and the 8 kHz file have features, mixed down and resampled to 16 kHz
    feats = "".join((first / "dump" / s / "feats.scp").read_text() for s in ("train", "dev", "test"))
    assert re.search(r"^carl-u1 ", feats, re.M) and re.search(r"^dora-u1 ", feats, re.M)
    frames = dict(line.split() for s in ("train", "dev", "test")
                  for line in (first / "dump" / s / "utt2num_frames").read_text().splitlines())
    duration = sf.info(str(special["stereo44k"])).duration
    assert abs(int(frames["carl-u1"]) - 100 * duration) < 3
    # speakers held out for test; both judges trained (transcripts beside half of the files)
    spk = {s: set(line.split()[1] for line in (first / "data" / s / "utt2spk").read_text().splitlines())
           for s in ("train", "test")}
    assert len(spk["test"]) == 2 and not spk["test"] & spk["train"]
    assert spk["train"] | spk["test"] == {"Anna_K", "Anna_K_2", "bob_smith", "carl", "dora", "ed"}
    assert (first / "data" / "test" / "units").is_file() and (first / "exp" / "judge" / "content" / "judge.json").is_file()
    # the EER table and the disentanglement tables on the console
    out = run.stdout
    assert "| system | tag | EER s (%) | EER z (%) |" in out and "Disentanglement (test set):" in out
    rows = table_rows(out)
    eer_s = float(rows["C-DSVAE"][2])
    assert 0.0 <= eer_s <= 100.0
    assert re.search(r"^\| C-DSVAE \| cdsvae \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ ± [\d.]+ \| [\d.]+ ± ",
                     out, re.M)
    assert "| content judge (supervised reference) | judge/content |" in out
    assert re.search(r"^\| cdsvae \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \|", out, re.M)


def test_a_manifest_with_a_text_column_gives_the_same_data_dirs(custom_recipe):
    assert custom_recipe.data_before and custom_recipe.data_after == custom_recipe.data_before


def test_a_manifest_without_text_is_judged_for_its_speakers_alone(custom_recipe):
    rdir, run = custom_recipe.rdir, custom_recipe.manifest
    log = run.stderr
    for n in range(1, 8):
        assert re.search(rf"Stage {n}: ", log), f"stage {n} did not run"
    assert "No transcripts in data/train: no content units" in log
    assert "Features of train are up to date" in log and "Trained cdsvae already" in log
    said = [line for line in log.splitlines() if "Content is not judged" in line]
    assert len(said) == 2 and all("data/train/units is missing or empty (no transcripts)" in line for line in said)
    assert "Judge of content" not in log and "Judge of speaker" in log
    assert not list((rdir / "data").glob("*/units")) and not list((rdir / "data").glob("*/text"))
    out = run.stdout
    assert "| system | tag | EER s (%) | EER z (%) |" in out.split("Disentanglement (test set):")[0]
    out = out.split("Disentanglement (test set):")[1]
    cdsvae = next(line for line in out.splitlines() if line.startswith("| C-DSVAE | cdsvae |"))
    cells = [c.strip() for c in cdsvae.strip("|").split("|")]
    assert cells[4:6] == ["not measured", "not measured"] and cells[7] == "not measured"
    assert re.fullmatch(r"[\d.]+ ± [\d.]+", cells[6]) and float(cells[2]) >= 0.0  # EER s and the swap score
    detail = next(line for line in out.splitlines() if line.startswith("| cdsvae |"))
    cells = [c.strip() for c in detail.strip("|").split("|")]
    for k in (1, 3, 5):  # swap, random s, random z: the speaker scores
        assert re.fullmatch(r"[\d.]+ ± [\d.]+", cells[k]), cells
    assert cells[2] == cells[4] == cells[6] == cells[7] == "not measured"
    assert "| content judge (no transcripts: not trained) |" in out
    results = (rdir / "exp" / "RESULTS.md").read_text()
    assert "not measured" in results and "## Disentanglement (test set)" in results


def test_the_packed_model_converts_a_stereo_44k_recording_with_resample(custom_recipe, capsys):
    from cdsvae.bin.convert import main as convert

    rdir, corpus, special = custom_recipe.rdir, custom_recipe.corpus, custom_recipe.special
    b = corpus / "audio" / "bob.smith" / "u0.wav"
    out = rdir / "C.wav"
    assert convert([str(rdir / "exp" / "cdsvae" / "packed"), "--content", str(special["stereo44k"]), "--speaker",
                    str(b), "--out", str(out), "--resample", "--n_iter", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out}:") and "at 16000 Hz" in printed
    info = sf.info(str(out))
    assert sf.info(str(special["stereo44k"])).channels == 2 and sf.info(str(special["stereo44k"])).samplerate == 44100
    assert info.samplerate == 16000 and info.channels == 1 and info.frames > 0.5 * 16000


def test_two_stage_4_runs_on_one_experiment_the_second_is_refused_and_the_first_completes(custom_recipe):
    rdir = custom_recipe.rdir
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "cmd_backend")}
    env.setdefault("OMP_NUM_THREADS", "1")
    stage4 = ["./run.sh", "--stage", "4", "--stop_stage", "4", "--train_configs", "conf/train.yaml",
              "--tag_suffix", "_twice", "--train_args",
              "--train.epochs 4 --train.max_steps 12 --train.batch_size 4 --data.segments_per_utt 2"]
    lock = rdir / "exp" / ".cdsvae_twice.lock"
    first = subprocess.Popen(stage4, cwd=rdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    try:
        end = time.monotonic() + 60
        while not (lock.is_file() and lock.read_text().strip()):
            assert first.poll() is None and time.monotonic() < end, first.communicate()
            time.sleep(0.05)
        pid, host = lock.read_text().split()[:2]
        parent = re.search(r"^PPid:\s*(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)[1]
        t0 = time.monotonic()
        second = subprocess.run(stage4, cwd=rdir, capture_output=True, text=True, env=env, timeout=60)
        took = time.monotonic() - t0
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert second.returncode == 1 and took < 10
    errors = [line for line in second.stderr.splitlines() if "Error" in line]
    assert len(errors) == 1, second.stderr
    assert f"exp/cdsvae_twice is being written by process {pid} on host {host} (stage 4 of {rdir})" in errors[0]
    # the holder is the first run's stage script (run.sh's child)
    assert int(parent) == first.pid and host == socket.gethostname() and "Training cdsvae_twice" not in second.stderr
    # the first run is unharmed: it trained to the end, and its checkpoints load and say so
    assert first.returncode == 0, err
    assert "Trained cdsvae_twice: finished: step 12/12" in err
    ckpt_dir = rdir / "exp" / "cdsvae_twice" / "checkpoints"
    last = torch.load(sorted(ckpt_dir.glob("step*.pt"))[-1], weights_only=True)
    best = torch.load(ckpt_dir / "best.pt", weights_only=True)
    assert last["format"] == "cdsvae-checkpoint" and last["model"] and best["model"]
    assert (rdir / "exp" / "cdsvae_twice" / "progress").read_text().startswith("finished: step 12/12")
    assert "eval/train ratio" in (rdir / "exp" / "cdsvae_twice" / "train.log").read_text()

