"""Judge metrics (known answers, brute-force twins), the classifier, its CLI and the swap protocols."""

import json
import math
import types

import numpy as np
import pytest
import torch

from cdsvae.data.video import Factor, VideoDataset, write_video_split
from cdsvae.eval.judges.video import (
    JudgeClassifier,
    accuracy,
    balanced_indices,
    conditional_entropy,
    evaluate_judge,
    inception_score,
    load_judge,
    marginal_entropy,
    predict_probs,
    save_judge,
    train_judge,
)
from cdsvae.eval.metrics.video_swap import evaluate_swap_protocols
from cdsvae.io import UserError


def loop_metrics(p):
    """Plain-loop IS, H(y|x), H(y) with 0 log 0 = 0."""
    n, k = len(p), len(p[0])
    py = [sum(p[i][y] for i in range(n)) / n for y in range(k)]
    kl = 0.0
    hyx = 0.0
    for i in range(n):
        for y in range(k):
            if p[i][y] > 0:
                kl += p[i][y] * (math.log(p[i][y]) - math.log(py[y]))
                hyx -= p[i][y] * math.log(p[i][y])
    hy = -sum(v * math.log(v) for v in py if v > 0)
    return math.exp(kl / n), hyx / n, hy


@pytest.mark.parametrize("k", [2, 9, 10])
def test_uniform_predictions(k):
    p = torch.full((30, k), 1.0 / k, dtype=torch.float64)
    assert inception_score(p) == pytest.approx(1.0, abs=1e-9)
    assert conditional_entropy(p) == pytest.approx(math.log(k), abs=1e-9)
    assert marginal_entropy(p) == pytest.approx(math.log(k), abs=1e-9)


@pytest.mark.parametrize("k", [2, 9])
def test_confident_predictions_spread_evenly(k):
    p = torch.eye(k).repeat(4, 1)  # every class predicted with certainty, equally often
    assert inception_score(p) == pytest.approx(k, rel=1e-9)
    assert conditional_entropy(p) == pytest.approx(0.0, abs=1e-12)
    assert marginal_entropy(p) == pytest.approx(math.log(k), abs=1e-9)


def test_confident_on_one_class():
    p = torch.zeros(12, 5)
    p[:, 3] = 1
    assert inception_score(p) == pytest.approx(1.0)
    assert marginal_entropy(p) == pytest.approx(0.0, abs=1e-12)
    assert conditional_entropy(p) == pytest.approx(0.0, abs=1e-12)


def test_two_classes_by_hand():
    # Half the rows (0.5, 0.5), half (1, 0): p(y) = (0.75, 0.25).
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    hyx = 0.5 * math.log(2)
    hy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert conditional_entropy(p) == pytest.approx(hyx)
    assert marginal_entropy(p) == pytest.approx(hy)
    assert inception_score(p) == pytest.approx(math.exp(hy - hyx))


def test_metrics_match_loops_on_random_predictions():
    rng = np.random.default_rng(0)
    for k in (3, 9):
        p = rng.dirichlet(np.full(k, 0.3), size=40)
        p[0] = 0
        p[0, 1] = 1  # a zero probability must not produce NaN
        is_, hyx, hy = loop_metrics(p.tolist())
        t = torch.from_numpy(p)
        assert inception_score(t) == pytest.approx(is_, rel=1e-9)
        assert conditional_entropy(t) == pytest.approx(hyx, rel=1e-9)
        assert marginal_entropy(t) == pytest.approx(hy, rel=1e-9)
        assert math.log(inception_score(t)) == pytest.approx(marginal_entropy(t) - conditional_entropy(t), abs=1e-9)


def test_metrics_reject_non_distributions():
    with pytest.raises(ValueError):
        inception_score(torch.tensor([[0.5, 0.6]]))
    with pytest.raises(ValueError):
        conditional_entropy(torch.tensor([0.5, 0.5]))


def test_accuracy_known_answers():
    labels = torch.tensor([0, 1, 2, 2])
    assert accuracy(torch.tensor([0, 1, 2, 0]), labels) == 0.75
    scores = torch.tensor([[5.0, 0, 0], [0, 1, 0], [0, 0, -1], [3, 2, 1]])  # argmax 0,1,0,0
    assert accuracy(scores, labels) == 0.5
    with pytest.raises(ValueError):
        accuracy(torch.tensor([0, 1]), labels)


def test_balanced_indices_against_loop():
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 1, 2, 0])
    n = min(int((labels == c).sum()) for c in labels.unique())
    want = sorted(i for c in labels.unique().tolist() for i in [j for j in range(len(labels)) if labels[j] == c][:n])
    assert balanced_indices(labels).tolist() == want


# A synthetic labelled video set: colour (static, 3 classes) and motion direction (dynamic, 2).
FACTORS = [Factor("colour", 3, "static"), Factor("direction", 2, "dynamic")]
T, HW = 4, 16


def render(colour, direction, offset):
    """(N, T, 3, 16, 16): a bright 4x4 block in channel ``colour`` moving right (0) or left (1)."""
    n = len(colour)
    x = torch.zeros(n, T, 3, HW, HW)
    for i in range(n):
        for t in range(T):
            pos = int(offset[i]) + (3 * t if direction[i] == 0 else 3 * (T - 1 - t))
            x[i, t, int(colour[i]), 6:10, pos:pos + 4] = 1.0
            x[i, t, :, 12:14, :] += 0.2
    return x


def synthetic(n, seed):
    g = torch.Generator().manual_seed(seed)
    colour = torch.arange(n) % 3
    direction = (torch.arange(n) // 3) % 2
    offset = torch.randint(0, 3, (n,), generator=g)
    return render(colour, direction, offset), {"colour": colour, "direction": direction}


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge_data")
    for split, n, seed in (("train", 96, 0), ("test", 36, 1)):
        x, y = synthetic(n, seed)
        write_video_split(root / split, x.numpy(), {k: v.numpy() for k, v in y.items()}, FACTORS)
    return root


@pytest.fixture(scope="module")
def trained_judge(data_dirs):
    torch.manual_seed(0)
    judge = JudgeClassifier(FACTORS, in_channels=3, channels=(8, 16), g_dim=16, hidden_dim=16)
    hist = train_judge(judge, VideoDataset(data_dirs / "train"), epochs=12, batch_size=16, lr=3e-3, seed=0)
    return judge, hist


def test_tiny_judge_learns_easy_set(trained_judge, data_dirs):
    judge, hist = trained_judge
    assert hist[-1] < 0.25 * hist[0]
    acc = evaluate_judge(judge, VideoDataset(data_dirs / "test"))
    assert acc["colour"] >= 0.95 and acc["direction"] >= 0.95, acc


def test_judge_save_load_roundtrip(trained_judge, data_dirs, tmp_path):
    judge, _ = trained_judge
    save_judge(tmp_path, judge, {"note": "x"})
    again = load_judge(tmp_path)
    x, _ = synthetic(5, 3)
    a, b = predict_probs(judge, x), predict_probs(again, x)
    for k in a:
        assert torch.allclose(a[k], b[k])
    (tmp_path / "judge.pt").write_bytes((tmp_path / "judge.pt").read_bytes()[:100])
    with pytest.raises(UserError, match="judge.pt"):
        load_judge(tmp_path)


def test_judge_rejects_wrong_channels(trained_judge):
    judge, _ = trained_judge
    with pytest.raises(UserError, match="expected"):
        judge(torch.zeros(2, T, 1, HW, HW))


class OracleModel:
    """A 'model' that encodes colour into s and direction into z and renders them exactly.

    ``entangled`` puts the direction into s too, so resampling s destroys the motion.
    """

    def __init__(self, entangled=False):
        self.entangled = entangled

    def eval(self):
        return self

    def encode(self, x):
        colour = x[:, 0, :, 6:10].sum(dim=(-1, -2)).argmax(dim=1)
        centre0 = x[:, 0, :, 6:10].sum(dim=(1, 2)).argmax(dim=1)
        centre1 = x[:, -1, :, 6:10].sum(dim=(1, 2)).argmax(dim=1)
        direction = (centre1 < centre0).long()
        s = torch.stack([colour.float(), direction.float() if self.entangled else torch.zeros(len(x))], dim=1)
        z = torch.stack([direction.float()] * T, dim=1).unsqueeze(-1)
        return types.SimpleNamespace(s_mean=s, z_mean=z)

    def decode(self, s, z):
        colour = s[:, 0].round().long().clamp(0, 2)
        direction = (s[:, 1] if self.entangled else z[:, 0, 0]).round().long().clamp(0, 1)
        return render(colour, direction, torch.ones(len(s), dtype=torch.long))

    def sample_s(self, n, generator=None):
        return torch.randint(0, 3 if not self.entangled else 2, (n, 2), generator=generator).float()

    def sample_z_prior(self, n, length, generator=None):
        return torch.randint(0, 2, (n, 1, 1), generator=generator).float().expand(n, length, 1)


def test_protocols_on_oracle_models(trained_judge, data_dirs):
    judge, _ = trained_judge
    test = VideoDataset(data_dirs / "test")
    good = evaluate_swap_protocols(OracleModel(), judge, test, n_draws=3, batch_size=8, seed=0)
    assert good["reference"]["real"]["direction"] >= 0.95
    a = good["protocol_A"]["direction"]
    # z kept: the motion survives any s; the judge sees both directions equally often.
    assert a["acc"]["mean"] >= 0.95
    assert a["is"]["mean"] > 1.5 and a["h_y"]["mean"] == pytest.approx(math.log(2), abs=0.02)
    assert len(a["acc"]["draws"]) == 3
    # s kept: the colour survives any z.
    assert good["protocol_B"]["colour"]["acc"]["mean"] >= 0.95
    bad = evaluate_swap_protocols(OracleModel(entangled=True), judge, test, n_draws=3, batch_size=8, seed=0)
    assert bad["protocol_A"]["direction"]["acc"]["mean"] < 0.8
    again = evaluate_swap_protocols(OracleModel(), judge, test, n_draws=3, batch_size=8, seed=0)
    assert again["protocol_A"] == good["protocol_A"]


def run_cli(module, argv):
    from cdsvae.bin import run_main

    with pytest.raises(SystemExit) as e:
        run_main(module.main, argv)
    return e.value.code


def test_train_judge_cli(data_dirs, tmp_path, capsys):
    from cdsvae.bin import train_judge as cli

    out = tmp_path / "judge"
    args = ["--train", str(data_dirs / "train"), "--test", str(data_dirs / "test"), "--outdir", str(out),
            "--epochs", "12", "--batch_size", "16", "--lr", "3e-3", "--channels", "8,16", "--g_dim", "16",
            "--hidden_dim", "16", "--device", "cpu"]
    assert run_cli(cli, args + ["--threshold", "0.9"]) == 0
    report = json.loads((out / "judge_test.json").read_text())
    assert report["passed"] and set(report["accuracy"]) == {"colour", "direction"}
    assert (out / "judge.pt").is_file()
    # Same options: reused, not retrained. An impossible threshold fails naming the factors.
    assert run_cli(cli, args + ["--threshold", "1.01"]) == 1
    err = capsys.readouterr()
    assert "reusing" in err.out and "colour" in err.err and "direction" in err.err


def judge_args(data_dirs, out, *extra):
    return ["--train", str(data_dirs / "train"), "--test", str(data_dirs / "test"), "--outdir", str(out),
            "--epochs", "1", "--batch_size", "16", "--channels", "8", "--g_dim", "8", "--hidden_dim", "8",
            "--threshold", "0", *extra]


def test_train_judge_trains_only_when_no_usable_judge(data_dirs, tmp_path, capsys, monkeypatch):
    from cdsvae.bin import train_judge as cli
    from cdsvae.eval.judges import video_steps

    out = tmp_path / "judge"
    assert run_cli(cli, judge_args(data_dirs, out, "--device", "cpu")) == 0
    log = capsys.readouterr().out
    assert f"training a judge: no judge at {out / 'judge.pt'}" in log
    stamp = (out / "judge.pt").stat().st_mtime_ns

    # The same options and data: the saved judge is used, training is never called.
    def no_training(*a, **k):
        raise AssertionError("retrained a usable judge")

    monkeypatch.setattr(video_steps, "train_judge", no_training)
    assert run_cli(cli, judge_args(data_dirs, out, "--device", "cpu")) == 0
    log = capsys.readouterr().out
    assert "reusing it" in log and "training a judge" not in log
    assert (out / "judge.pt").stat().st_mtime_ns == stamp
    monkeypatch.undo()

    # Another option: retrained, and the log names what changed.
    assert run_cli(cli, judge_args(data_dirs, out, "--device", "cpu", "--seed", "3")) == 0
    log = capsys.readouterr().out
    assert f"training a judge: {out / 'judge.pt'} was trained with other options or data (seed 0 -> 3)" in log
    # --force: retrained although nothing changed.
    assert run_cli(cli, judge_args(data_dirs, out, "--device", "cpu", "--seed", "3", "--force")) == 0
    assert "training a judge: --force given" in capsys.readouterr().out


def test_train_judge_retrains_when_the_training_data_changed(data_dirs, tmp_path, capsys):
    from cdsvae.bin import train_judge as cli

    out = tmp_path / "judge"
    assert run_cli(cli, judge_args(data_dirs, out, "--device", "cpu")) == 0
    assert run_cli(cli, judge_args(data_dirs, out, "--device", "cpu", "--max_train", "48")) == 0
    log = capsys.readouterr().out
    assert f"training data {(data_dirs / 'train').resolve()} differs from the recorded one" in log


def test_train_judge_stamps_the_frames_by_content(data_dirs, tmp_path, capsys):
    """A touched frames file holds the same data (reused); other frames of the same size do not."""
    import os
    import shutil

    from cdsvae.bin import train_judge as cli

    data, out = tmp_path / "data", tmp_path / "judge"
    shutil.copytree(data_dirs, data)
    assert run_cli(cli, judge_args(data, out, "--device", "cpu")) == 0
    capsys.readouterr()
    frames = data / "train" / "frames.npy"
    os.utime(frames, ns=(1, 1))
    assert run_cli(cli, judge_args(data, out, "--device", "cpu")) == 0
    assert "reusing it" in capsys.readouterr().out
    content = bytearray(frames.read_bytes())
    content[-4] ^= 0x01  # lowest mantissa byte of the last value (float32), or one pixel (uint8)
    frames.write_bytes(bytes(content))
    assert run_cli(cli, judge_args(data, out, "--device", "cpu")) == 0
    assert "differs from the recorded one" in capsys.readouterr().out


def test_train_judge_does_not_train_over_an_unreadable_judge(data_dirs, tmp_path, capsys):
    from cdsvae.bin import train_judge as cli

    out = tmp_path / "judge"
    out.mkdir()
    (out / "judge.pt").write_bytes(b"not a checkpoint\n")
    assert run_cli(cli, judge_args(data_dirs, out, "--device", "cpu")) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"train_judge: error: {out / 'judge.pt'}: not a readable judge checkpoint")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (out / "judge.pt").read_bytes() == b"not a checkpoint\n"  # left alone for inspection
    assert not (out / "judge_test.json").exists()


def test_train_judge_device_error_names_the_judge(data_dirs, tmp_path, capsys):
    from cdsvae.bin import train_judge as cli

    out = tmp_path / "judge"
    assert run_cli(cli, judge_args(data_dirs, out, "--device", "cpu")) == 0
    before = (out / "judge.pt").read_bytes()
    capsys.readouterr()
    # cuda:99 exists on no machine here (no driver, or fewer GPUs); a misspelt device is no device at all.
    for device in ("cuda:99", "nosuchdevice"):
        assert run_cli(cli, judge_args(data_dirs, out, "--device", device)) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"train_judge: error: {out / 'judge.pt'}: cannot train or run the judge on "
                              f"--device {device}: "), err
        assert err.count("\n") == 1
        assert (out / "judge.pt").read_bytes() == before


def test_load_judge_device_error_names_the_file(trained_judge, tmp_path):
    judge, _ = trained_judge
    save_judge(tmp_path, judge)
    with pytest.raises(UserError, match=r"judge\.pt: cannot move the judge to device 'cuda:99'"):
        load_judge(tmp_path, "cuda:99")


def test_judge_eval_cli(trained_judge, data_dirs, tmp_path, monkeypatch):
    import cdsvae.experiment.load
    from cdsvae.bin import judge_eval as cli

    judge, _ = trained_judge
    save_judge(tmp_path / "judge", judge, {"test_dir": str(data_dirs / "test")})
    exp = tmp_path / "exp"
    exp.mkdir()
    info = {"file": "checkpoints/best.pt", "step": 7, "eval_train_ratio": 1.01}
    monkeypatch.setattr(cdsvae.experiment.load, "load_model_with_info", lambda d, device="cpu": (OracleModel(), {}, info))
    code = run_cli(cli, ["--expdir", str(exp), "--judge_dir", str(tmp_path / "judge"), "--n_draws", "2",
                         "--batch_size", "8", "--device", "cpu"])
    assert code == 0
    res = json.loads((exp / "judge_results.json").read_text())
    assert res["n_draws"] == 2 and res["protocol_A"]["direction"]["acc"]["mean"] >= 0.95
    assert set(res["protocol_B"]) == {"colour"}
    assert res["checkpoint"] == info  # which weights were judged, for the report
    assert run_cli(cli, ["--expdir", str(tmp_path / "nope"), "--judge_dir", str(tmp_path / "judge")]) == 1


def test_help_works():
    from cdsvae.bin import judge_eval, train_judge as tj

    for m in (tj, judge_eval):
        with pytest.raises(SystemExit) as e:
            m.main(["--help"])
        assert e.value.code == 0
