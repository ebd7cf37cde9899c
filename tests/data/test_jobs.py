"""Feature jobs: items of a data dir, one job's outputs in one or several dirs, and their merge."""

import kaldiio
import numpy as np
import pytest
import yaml

from cdsvae.data.datadir import DataDir, split_data_dir
from cdsvae.data.jobs import audio_items, job_paths, merge_jobs, run_job
from cdsvae.io import UserError


def make_dir(path, segments=False):
    path.mkdir(parents=True)
    utts = ["s1-a", "s1-b", "s2-a", "s2-b"]
    (path / "utt2spk").write_text("".join(f"{u} {u[:2]}\n" for u in utts))
    if segments:
        (path / "wav.scp").write_text("r1 /audio/r1.wav\nr2 cat /audio/r2.wav |\n")
        (path / "segments").write_text("s1-a r1 0 1.5\ns1-b r1 1.5 -1\ns2-a r2 0.25 1\ns2-b r2 1 2\n")
    else:
        (path / "wav.scp").write_text("".join(f"{u} /audio/{u}.wav\n" for u in utts))
    return path


def test_audio_items(tmp_path):
    plain = audio_items(make_dir(tmp_path / "plain"))
    assert plain[0] == ("s1-a", "/audio/s1-a.wav", None, None) and len(plain) == 4
    seg = audio_items(make_dir(tmp_path / "seg", segments=True))
    assert seg == [("s1-a", "/audio/r1.wav", 0.0, 1.5), ("s1-b", "/audio/r1.wav", 1.5, -1.0),
                   ("s2-a", "cat /audio/r2.wav |", 0.25, 1.0), ("s2-b", "cat /audio/r2.wav |", 1.0, 2.0)]
    (tmp_path / "seg" / "segments").write_text("s1-a r9 0 1\n")
    with pytest.raises(UserError, match="segments: 's1-a': recording 'r9' not in wav.scp"):
        audio_items(tmp_path / "seg")


def fake_features(items, cfg):
    """Two 'copies' per utterance; s1-b is bad."""
    for utt, spec, _, _ in items:
        if utt == "s1-b":
            yield utt, UserError(f"cannot read {spec}")
            continue
        n = 3 + len(utt) % 2 + ord(utt[-1]) % 3
        yield utt, [np.full((n, cfg["n_mels"]), k + ord(utt[1]), np.float32) for k in (1, 2)]


def test_jobs_write_several_dirs_in_step_and_merge(tmp_path):
    data = make_dir(tmp_path / "data")
    cfg = {"n_mels": 4}
    outs = [tmp_path / "vc" / "copy1", tmp_path / "vc" / "copy2"]
    with pytest.raises(UserError, match="cannot read /audio/s1-b.wav"):
        run_job(audio_items(data), cfg, outs, 1, False, fake_features)
    assert not list((tmp_path / "vc").rglob("*.ark")) and not list((tmp_path / "vc").rglob("*.scp"))

    for job, part in enumerate(split_data_dir(data, 2), 1):
        assert run_job(audio_items(part), cfg, outs, job, True, fake_features) == ((1, 1) if job == 1 else (2, 0))
    for k, out in enumerate(outs, 1):
        assert job_paths(out, 1)["bad"].read_text() == "s1-b cannot read /audio/s1-b.wav\n"
        assert yaml.safe_load(job_paths(out, 2)["config"].read_text()) == cfg
        assert merge_jobs(data, out, 2, desc="fake") == (3, 1)
        feats = {u: np.asarray(m) for u, m in kaldiio.load_scp(str(out / "feats.scp")).items()}
        assert sorted(feats) == ["s1-a", "s2-a", "s2-b"] and feats["s2-a"][0, 0] == k + ord("2")
        assert DataDir.load(out).utt2num_frames == {u: m.shape[0] for u, m in feats.items()}
        assert (out / "feat_dim").read_text() == "4\n" and (out / "bad_utts").read_text().startswith("s1-b ")
        assert DataDir.load(out).utterances == ["s1-a", "s2-a", "s2-b"]

    job_paths(outs[0], 2)["config"].write_text("n_mels: 5\n")
    with pytest.raises(UserError, match="options differ from job 1"):
        merge_jobs(data, outs[0], 2)
    job_paths(outs[0], 2)["scp"].unlink()
    with pytest.raises(UserError, match="raw_fbank.2.scp: missing: did fake job 2 of 2 fail"):
        merge_jobs(data, outs[0], 2, desc="fake")


def test_one_dir_takes_plain_matrices(tmp_path):
    data = make_dir(tmp_path / "data")

    def features(items, cfg):
        for utt, _, _, _ in items:
            yield utt, np.ones((2, 3), np.float32)

    assert run_job(audio_items(data), {"n_mels": 3}, tmp_path / "dump", 1, False, features) == (4, 0)
    assert merge_jobs(data, tmp_path / "dump", 1) == (4, 0)
    more = make_dir(tmp_path / "more")
    with open(more / "utt2spk", "a") as f:
        f.write("s3-a s3\n")
    with pytest.raises(UserError, match="1 utterance\\(s\\) of .*more have no features \\(e.g. s3-a\\)"):
        merge_jobs(more, tmp_path / "dump", 1)
