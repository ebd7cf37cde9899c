"""Speech segment dataset: segments cut in the loader, motion views aligned, deterministic draws."""

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cdsvae.data.feats import CMVNStats, FeatureWriter
from cdsvae.data.speech import SPEECH_DATA, FeatureSet, build_speech_dataset, feature_normaliser
from cdsvae.io import UserError

DIM = 3
LENGTHS = {"spkA-u1": 25, "spkA-u2": 47, "spkB-u1": 20, "spkC-u1": 61}


def matrix(utt, n, offset=0.0):
    """Frame t of utterance u holds (u_code, t, offset) in its columns, so any slice is recognisable."""
    code = sorted(LENGTHS).index(utt)
    return np.stack([np.full(n, code), np.arange(n), np.full(n, offset)], 1).astype(np.float32)


def write_featdir(path, lengths, offset=0.0):
    path.mkdir(parents=True)
    with FeatureWriter(path / "data.ark", path / "feats.scp", path / "utt2num_frames") as w:
        for utt in sorted(lengths):
            w.write(utt, matrix(utt, lengths[utt], offset))
    (path / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(lengths)))
    return path


@pytest.fixture
def dirs(tmp_path):
    write_featdir(tmp_path / "train", LENGTHS)
    for k in (1, 2):
        write_featdir(tmp_path / "vc" / f"copy{k}", LENGTHS, offset=float(k))
    return tmp_path


def cfg(dirs, **kw):
    out = {"train_feats": str(dirs / "train"), "test_feats": str(dirs / "train"), "segment_frames": 20}
    out.update(kw)
    return out


def test_training_segments_and_motion_views(dirs):
    ds = build_speech_dataset(cfg(dirs, motion_feats=str(dirs / "vc"), segments_per_utt=3, seed=5), "train")
    assert len(ds) == 4 * 3
    assert ds.speakers == ["spkA", "spkB", "spkC"]
    seen_copies = set()
    for i in range(len(ds)):
        item = ds[i]
        utt = sorted(LENGTHS)[i // 3]
        x, xm = item["x"].numpy(), item["x_motion"].numpy()
        assert item["utt"] == utt and item["x"].dtype == torch.float32 and x.shape == (20, DIM)
        assert item["spk"] == ds.speakers.index(utt.split("-")[0])
        start = item["start"]
        assert 0 <= start <= LENGTHS[utt] - 20
        np.testing.assert_array_equal(x, matrix(utt, LENGTHS[utt])[start:start + 20])
        # the motion view: the same frames of the same utterance, from one of the copies
        np.testing.assert_array_equal(xm[:, :2], x[:, :2])
        assert len(set(xm[:, 2])) == 1 and xm[0, 2] in (1.0, 2.0)
        seen_copies.add(float(xm[0, 2]))
    assert seen_copies == {1.0, 2.0}


def test_draws_deterministic_per_seed_and_epoch(dirs):
    def starts(seed, epoch):
        ds = build_speech_dataset(cfg(dirs, seed=seed, segments_per_utt=4), "train")
        ds.set_epoch(epoch)
        return [ds[i]["start"] for i in range(len(ds))]

    assert starts(1, 0) == starts(1, 0)
    assert starts(1, 0) != starts(1, 1)
    assert starts(1, 0) != starts(2, 0)


def test_worker_processes_see_the_same_items(dirs):
    ds = build_speech_dataset(cfg(dirs, motion_feats=[str(dirs / "vc" / "copy2")]), "train")
    ds.set_epoch(3)
    ds[0]  # open files in this process before the workers fork
    main = [ds[i] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    x = torch.cat([b["x"] for b in batches])
    xm = torch.cat([b["x_motion"] for b in batches])
    assert torch.equal(x, torch.stack([m["x"] for m in main]))
    assert torch.equal(xm, torch.stack([m["x_motion"] for m in main]))
    assert sum((b["utt"] for b in batches), []) == [m["utt"] for m in main]


def test_evaluation_enumerates_segments(dirs):
    ds = build_speech_dataset(cfg(dirs), "test")
    expected = [(u, s) for u in sorted(LENGTHS) for s in range(0, LENGTHS[u] - 19, 20)
                if s + 20 <= LENGTHS[u]]
    assert len(ds) == len(expected) == 1 + 2 + 1 + 3
    assert [(ds[i]["utt"], ds[i]["start"]) for i in range(len(ds))] == expected
    assert "x_motion" not in ds[0]  # copies belong to the training split unless mapped
    ds2 = build_speech_dataset(cfg(dirs, motion_feats={"test": str(dirs / "vc")}), "test")
    assert "x_motion" in ds2[0]


def test_short_utterance_error_or_skip(dirs, caplog):
    with pytest.raises(UserError, match="spkB-u1.*20 frames, shorter than one segment of 21"):
        build_speech_dataset(cfg(dirs, segment_frames=21), "train")
    ds = build_speech_dataset(cfg(dirs, segment_frames=26, skip_bad=True), "train")
    assert ds.skipped == ["spkA-u1", "spkB-u1"] and ds.utts == ["spkA-u2", "spkC-u1"]
    assert "skipped 2 of 4" in caplog.text
    assert ds.speakers == ["spkA", "spkC"]


def test_missing_copy_frames_is_an_error(dirs, tmp_path):
    partial = write_featdir(tmp_path / "partial", {k: v for k, v in LENGTHS.items() if k != "spkC-u1"}, 1.0)
    with pytest.raises(UserError, match="spkC-u1.*converted copy"):
        build_speech_dataset(cfg(dirs, motion_feats=[str(partial)]), "train")


def test_cmvn_applied_to_both_views(dirs):
    stats = CMVNStats()
    stats.accumulate(np.array([[0.0, 0.0, 0.0], [2.0, 4.0, 2.0]]))  # mean (1, 2, 1), std (1, 2, 1)
    stats.save(dirs / "cmvn.npz")
    ds = build_speech_dataset(cfg(dirs, cmvn=str(dirs / "cmvn.npz"), motion_feats=str(dirs / "vc")), "train")
    item = ds[0]
    raw = matrix(item["utt"], LENGTHS[item["utt"]])[item["start"]:item["start"] + 20]
    np.testing.assert_allclose(item["x"].numpy(), (raw - [1, 2, 1]) / [1, 2, 1], atol=1e-6)
    assert np.allclose(item["x_motion"].numpy()[:, 2], item["x_motion"].numpy()[0, 2])
    norm = feature_normaliser(cfg(dirs, cmvn=str(dirs / "cmvn.npz")))
    np.testing.assert_allclose(norm(raw), item["x"].numpy(), atol=1e-6)
    stats5 = CMVNStats()
    stats5.accumulate(np.ones((2, 5)))
    stats5.save(dirs / "cmvn5.npz")
    with pytest.raises(UserError, match="dim 5"):
        build_speech_dataset(cfg(dirs, cmvn=str(dirs / "cmvn5.npz")), "train")


def test_lazy_loading_and_file_cache(dirs):
    fs = FeatureSet(dirs / "train")
    assert fs._cache is None
    fs.load("spkA-u1")
    fs.load("spkC-u1")
    assert len(fs._fds) == 1  # one ark, opened once
    clone = pickle.loads(pickle.dumps(fs))  # what a spawned worker gets: no inherited open files
    assert clone._fds == {}
    np.testing.assert_array_equal(clone.load("spkA-u2"), matrix("spkA-u2", 47))
    mem = FeatureSet(dirs / "train", in_memory=True)
    assert sorted(mem._cache) == sorted(LENGTHS)


def test_config_errors(dirs):
    with pytest.raises(UserError, match="unknown key.*segment_length.*valid keys"):
        build_speech_dataset(cfg(dirs, segment_length=20), "train")
    with pytest.raises(UserError, match="data.dev_feats"):
        build_speech_dataset(cfg(dirs), "dev")
    ds = build_speech_dataset(cfg(dirs, valid_feats=str(dirs / "train"), type="speech", valid_split="dev"), "dev")
    assert not ds.train
    with pytest.raises(UserError, match="feature dir not found"):
        build_speech_dataset(cfg(dirs, train_feats=str(dirs / "nope")), "train")
    assert SPEECH_DATA.fields["segment_frames"].default == 20
    # the keys are declared with their types (cdsvae.config): a wrong one names the key and what it must be
    with pytest.raises(UserError, match=r"'data.segment_frames' must be an integer >= 1, got '20'"):
        build_speech_dataset(cfg(dirs, segment_frames="20"), "train")
    with pytest.raises(UserError, match=r"'data.in_memory' must be true or false, got 1"):
        build_speech_dataset(cfg(dirs, in_memory=1), "train")


def test_content_segment_is_another_part_of_the_same_utterance(dirs):
    plain = build_speech_dataset(cfg(dirs, motion_feats=str(dirs / "vc"), segments_per_utt=8, seed=3), "train")
    ds = build_speech_dataset(cfg(dirs, motion_feats=str(dirs / "vc"), segments_per_utt=8, seed=3), "train",
                              content_segment=True)
    ds.set_epoch(2)
    plain.set_epoch(2)
    starts = {}
    for i in range(len(ds)):
        item, other = ds[i], plain[i]
        # x and its motion view are the same with or without content segments
        assert torch.equal(item["x"], other["x"]) and torch.equal(item["x_motion"], other["x_motion"])
        assert "x_content" not in other
        utt, n, start = item["utt"], LENGTHS[item["utt"]], item["start"]
        xc = item["x_content"].numpy()
        assert (xc[:, 0] == sorted(LENGTHS).index(utt)).all() and (xc[:, 2] == 0).all()  # same utterance, original
        c = int(xc[0, 1])
        assert c == ds.content_start(i) and 0 <= c <= n - 20
        np.testing.assert_array_equal(xc, matrix(utt, n)[c:c + 20])
        if start >= 20 or start + 40 <= n:
            assert abs(c - start) >= 20, (utt, start, c)  # no overlap whenever a disjoint segment fits
        starts.setdefault(utt, set()).add(c)
    assert len(starts["spkC-u1"]) > 3  # drawn, not fixed
    assert ds.item_groups().tolist() == [u for u in range(4) for _ in range(8)]


def test_content_segment_in_evaluation_is_the_next_segment(dirs):
    ds = build_speech_dataset(cfg(dirs), "test", content_segment=True)
    got = [(ds[i]["utt"], ds[i]["start"], int(ds[i]["x_content"][0, 1])) for i in range(len(ds))]
    assert got == [("spkA-u1", 0, 0), ("spkA-u2", 0, 20), ("spkA-u2", 20, 0), ("spkB-u1", 0, 0),
                   ("spkC-u1", 0, 20), ("spkC-u1", 20, 40), ("spkC-u1", 40, 0)]
    assert ds.item_groups().tolist() == [0, 1, 1, 2, 3, 3, 3]
