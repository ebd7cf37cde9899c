"""The CTC recogniser: best-path decoding (known answers and a plain-loop twin), padding-free
batching, the dense BiLSTM against torch's packed one, learning a synthetic task (and failing on
inputs without information), bit-identical resume, the saved file, units files and folded scores."""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from cdsvae.eval.judges.ctc import (CTCConfig, CTCRecogniser, Units, greedy_decode, load_recogniser, read_units,
                             recognise, recognise_ids, save_recogniser, score_hypotheses, train_ctc,
                             unit_error_rate)
from cdsvae.eval.judges.ctc_model import BiLSTM
from cdsvae.io import UserError

N_UNITS = 5
DIM = 12


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread is several times faster than two busy ones, and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def log_probs_of(paths, n_classes=4):
    """(B, T, C) log-probs whose per-frame argmax is ``paths[b][t]``."""
    T = max(len(p) for p in paths)
    x = torch.full((len(paths), T, n_classes), -5.0)
    for b, p in enumerate(paths):
        for t, c in enumerate(p):
            x[b, t, c] = -0.1
    return x, [len(p) for p in paths]


@pytest.mark.parametrize("path, expected", [
    ([1, 1, 2, 2, 2, 3], [1, 2, 3]),          # repeats collapse
    ([1, 0, 1], [1, 1]),                      # a blank separates a repeated unit
    ([1, 1, 0, 0, 1, 1], [1, 1]),
    ([0, 0, 0], []),                          # all blank
    ([0, 2, 0, 3, 3, 0], [2, 3]),
    ([3], [3]),
])
def test_greedy_decode_known_answers(path, expected):
    lp, lengths = log_probs_of([path])
    assert greedy_decode(lp, lengths) == [expected]


def test_greedy_decode_ignores_frames_past_the_length():
    lp, _ = log_probs_of([[1, 2, 2, 3, 3]])
    assert greedy_decode(lp, [3]) == [[1, 2]]
    assert greedy_decode(lp, [0]) == [[]]


def plain_best_path(frames):
    """Per-frame argmax by a python loop, repeats collapsed, blanks dropped."""
    out, prev = [], None
    for row in frames:
        best = max(range(len(row)), key=lambda c: row[c])
        if best != prev and best != 0:
            out.append(best)
        prev = best
    return out


def test_greedy_decode_matches_a_plain_loop():
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        B, T, C = 3, int(torch.randint(1, 12, (1,), generator=gen)), int(torch.randint(2, 5, (1,), generator=gen))
        lp = torch.randn(B, T, C, generator=gen).log_softmax(-1)
        lengths = torch.randint(0, T + 1, (B,), generator=gen)
        expected = [plain_best_path(lp[b, :int(lengths[b])].tolist()) for b in range(B)]
        assert greedy_decode(lp, lengths) == expected


def test_dense_bilstm_equals_torch_packed_bilstm():
    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 4, num_layers=2, batch_first=True, bidirectional=True)
    mine = BiLSTM(5, 4, 2, dropout=0.0)
    for k in range(2):
        for mod, sfx in ((mine.fwd[k], ""), (mine.bwd[k], "_reverse")):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(mod, name + "_l0").data.copy_(getattr(ref, f"{name}_l{k}{sfx}"))
    x, lengths = torch.randn(3, 7, 5), torch.tensor([7, 4, 1])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = pad_packed_sequence(ref(packed)[0], batch_first=True)
    got = mine(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(got[b, :n], expected[b, :n], atol=1e-6, rtol=1e-5)


# --- a synthetic task: each unit is a random feature vector held for a few frames, plus noise; ---
# --- no unit follows itself (two held copies of one vector would be one long block)          ---

PROTOS = np.random.default_rng(123).normal(size=(N_UNITS + 1, DIM)).astype(np.float32)


def synthetic(n, seed, noise=0.8):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(n):
        seq, length = [int(rng.integers(1, N_UNITS + 1))], int(rng.integers(3, 7))
        while len(seq) < length:
            seq.append(int(rng.choice([u for u in range(1, N_UNITS + 1) if u != seq[-1]])))
        x = np.concatenate([np.repeat(PROTOS[u][None], int(rng.integers(3, 6)), 0) for u in seq])
        xs.append(x + noise * rng.normal(size=x.shape).astype(np.float32))
        ys.append(seq)
    return xs, ys


UNITS = Units([f"u{i}" for i in range(1, N_UNITS + 1)])
SMALL = dict(hidden=32, layers=1, proj=32, dropout=0.0, batch_size=8, lr=1e-2)


@pytest.fixture(scope="module")
def trained():
    xs, ys = synthetic(120, seed=0)
    model = train_ctc(xs, ys, N_UNITS, CTCConfig(epochs=6, seed=0, **SMALL), progress=False)
    return model, xs, ys


def test_learns_the_units_and_fails_on_inputs_without_information(trained):
    model, train_x, train_y = trained
    test_x, test_y = synthetic(40, seed=99)
    refs = [UNITS.decode(y) for y in test_y]
    good = unit_error_rate(model, test_x, refs, UNITS)
    assert good.rate < 0.10, good

    # the same recogniser trained on inputs that carry nothing (the "probe from s") must fail
    rng = np.random.default_rng(5)
    blank_x = [rng.normal(size=x.shape).astype(np.float32) for x in train_x]
    blind = train_ctc(blank_x, train_y, N_UNITS, CTCConfig(epochs=6, seed=0, **SMALL), progress=False)
    test_blank = [rng.normal(size=x.shape).astype(np.float32) for x in test_x]
    bad = unit_error_rate(blind, test_blank, refs, UNITS)
    assert bad.rate > 0.60, bad


def test_batched_recognition_equals_one_at_a_time(trained):
    model, _, _ = trained
    xs, _ = synthetic(13, seed=7)
    batched = recognise(model, xs, UNITS, batch_size=5)
    single = [recognise(model, [x], UNITS, batch_size=1)[0] for x in xs]
    assert batched == single
    assert any(batched)  # not trivially all empty


@pytest.mark.parametrize("subsample, frontend", [(1, "conv"), (2, "conv"), (3, "linear")])
def test_padding_does_not_change_the_log_probs(subsample, frontend):
    torch.manual_seed(0)
    model = CTCRecogniser(DIM, 6, hidden=8, layers=2, proj=8, subsample=subsample, frontend=frontend).eval()
    model.set_normalisation(torch.linspace(-1, 1, DIM), torch.linspace(0.5, 2, DIM))
    xs, _ = synthetic(4, seed=11)
    batch = torch.zeros(len(xs), max(len(x) for x in xs) + 5, DIM)
    for b, x in enumerate(xs):
        batch[b, :len(x)] = torch.from_numpy(x)
    with torch.no_grad():
        log_probs, out_lengths = model(batch, torch.tensor([len(x) for x in xs]))
        for b, x in enumerate(xs):
            alone, n = model(torch.from_numpy(x)[None], torch.tensor([len(x)]))
            assert int(n) == int(out_lengths[b]) == -(-len(x) // subsample)
            torch.testing.assert_close(log_probs[b, :int(n)], alone[0], atol=1e-5, rtol=1e-5)


def test_resume_equals_training_at_once(tmp_path):
    xs, ys = synthetic(24, seed=3)
    cfg = dict(hidden=16, layers=2, proj=16, dropout=0.2, batch_size=8, lr=5e-3, seed=4,
               time_masks=1, time_mask_width=3, feature_masks=1, feature_mask_width=2)
    once = train_ctc(xs, ys, N_UNITS, CTCConfig(epochs=3, **cfg), progress=False)
    work = tmp_path / "work"
    train_ctc(xs, ys, N_UNITS, CTCConfig(epochs=1, **cfg), workdir=work, progress=False)
    assert (work / "checkpoint.pt").is_file()
    resumed = train_ctc(xs, ys, N_UNITS, CTCConfig(epochs=3, **cfg), workdir=work, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for (name, a), (_, b) in zip(once.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    # a different seed changes the weights; a different config or data refuses the checkpoint
    other = train_ctc(xs, ys, N_UNITS, CTCConfig(epochs=1, **{**cfg, "seed": 5}), progress=False)
    assert not torch.equal(other.out.weight, resumed.out.weight)
    with pytest.raises(UserError, match="different ctc config.*hidden"):
        train_ctc(xs, ys, N_UNITS, CTCConfig(epochs=4, **{**cfg, "hidden": 8}), workdir=work, progress=False)
    with pytest.raises(UserError, match="different training data"):
        train_ctc(xs[1:], ys[1:], N_UNITS, CTCConfig(epochs=4, **cfg), workdir=work, progress=False)


def test_too_short_utterances_are_skipped(caplog):
    xs, ys = synthetic(10, seed=8)
    xs.append(np.zeros((3, DIM), np.float32))
    ys.append([1, 1, 2])  # needs 4 frames: 1 blank 1 2
    with caplog.at_level("INFO", logger="cdsvae.eval.judges.ctc"):
        train_ctc(xs, ys, N_UNITS, CTCConfig(epochs=1, **SMALL), progress=False)
    assert "skipping 1 of 11 utterances" in caplog.text
    with pytest.raises(UserError, match="long enough"):
        train_ctc(xs[-1:], ys[-1:], N_UNITS, CTCConfig(epochs=1, **SMALL), progress=False)


def test_save_and_load_round_trip(tmp_path):
    model = CTCRecogniser(7, UNITS.n_classes, hidden=8, layers=2, proj=8, subsample=2, frontend="linear")
    model.set_normalisation(torch.arange(7.0), torch.full((7,), 2.0))
    path = save_recogniser(tmp_path / "ctc.pt", model, UNITS, extra={"uer": 0.25})
    assert isinstance(torch.load(path, weights_only=True), dict)
    loaded, units, extra = load_recogniser(path)
    assert units == UNITS and extra == {"uer": 0.25} and loaded.config == model.config
    x = [np.random.default_rng(0).normal(size=(11, 7)).astype(np.float32)]
    assert recognise_ids(loaded, x) == recognise_ids(model, x)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_corrupt_recogniser_file_is_a_user_error(tmp_path):
    path = tmp_path / "ctc.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match=str(path)) as err:
        load_recogniser(path)
    assert "\n" not in str(err.value)
    torch.save({"something": 1}, path)
    with pytest.raises(UserError, match="not a CTC recogniser"):
        load_recogniser(path)


def test_units_file_and_vocabulary(tmp_path):
    good = tmp_path / "units"
    good.write_text("utt1 b a c\nutt2 a a\n")
    table = read_units(good)
    assert table == {"utt1": ["b", "a", "c"], "utt2": ["a", "a"]}
    units = Units.from_transcripts(table)
    assert units.to_list() == ["a", "b", "c"] and units.n_classes == 4
    assert units.encode(["c", "a"]) == [3, 1]
    assert units.decode([3, 0, 1]) == ["c", "a"]
    assert Units.from_list(units.to_list()) == units
    with pytest.raises(UserError, match="unit 'zz'"):
        units.encode(["a", "zz"])
    bad = tmp_path / "bad_units"
    bad.write_text("utt1 a b\nutt2\nutt3 c\n")
    with pytest.raises(UserError, match=f"{bad}:2: utterance 'utt2' has no units"):
        read_units(bad)
    bad.write_text("utt1 a b\nutt1 c\n")
    with pytest.raises(UserError, match=f"{bad}:2: .*twice"):
        read_units(bad)


def test_folding_applies_to_both_sides():
    mapping = {"ao": "aa", "aa": "aa", "ix": "ih", "ih": "ih", "h#": None, "k": "k"}
    refs = [["h#", "k", "ao", "ix", "h#"]]
    hyps = [["k", "aa", "ih"]]
    assert score_hypotheses(refs, hyps).errors == 4         # 2 substitutions + 2 deletions
    folded = score_hypotheses(refs, hyps, mapping)
    assert (folded.errors, folded.ref_units) == (0, 3)
    folded = score_hypotheses([["k", "ao"]], [["k", "ix", "h#"]], mapping)
    assert (folded.sub, folded.dels, folded.ins, folded.ref_units) == (1, 0, 0, 2)
