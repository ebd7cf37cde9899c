"""Stage 5's judges and stage 6's disentanglement metrics through their CLIs, on a tiny experiment:
files written, reruns up to date, the gate, and the judged listening demo."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
from _experiments import trained_speech_exp  # noqa: E402
from cdsvae.errors import UserError

TINY = {
    "speaker": {"channels": [16, 16, 16, 16, 48], "lin_neurons": 8, "attention_channels": 8, "se_channels": 8,
                "epochs": 2, "batch_size": 4, "crop_frames": 30},
    "content": {"hidden": 8, "layers": 1, "proj": 8, "epochs": 2, "batch_size": 2},
    "probe": {"hidden": 8, "layers": 1, "proj": 8, "epochs": 2, "batch_size": 2},
    "swap": {"n_pairs": 3, "n_draws": 2},
}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    exp = trained_speech_exp(root)
    feats = root / "dump" / "test"
    shutil.copy(root / "cmvn.npz", feats / "cmvn.npz")
    data = root / "data" / "test"
    data.mkdir(parents=True)
    shutil.copy(feats / "utt2spk", data / "utt2spk")
    utts = sorted(line.split()[0] for line in (feats / "utt2spk").read_text().splitlines())
    (data / "units").write_text("".join(f"{u} a b {'c' if k % 2 else 'd'} a\n" for k, u in enumerate(utts)))
    conf = root / "judges.yaml"
    conf.write_text(yaml.safe_dump(TINY))
    return root, exp, feats, data, conf


def judge_args(root, feats, data, conf, which):
    return ["--judge", which, "--config", str(conf), "--train_feats", str(feats), "--train_data", str(data),
            "--test_feats", str(feats), "--test_data", str(data), "--outdir", str(root / "exp" / "judge" / which)]


def test_judges_metrics_report_and_demo(recipe, capsys):
    from cdsvae.bin.disentangle import main as disentangle
    from cdsvae.bin.make_demo import main as make_demo
    from cdsvae.bin.train_speech_judge import main as train_judge

    root, exp, feats, data, conf = recipe
    judge_dir = root / "exp" / "judge"
    for which in ("speaker", "content"):
        assert train_judge(judge_args(root, feats, data, conf, which)) == 0
        record = json.loads((judge_dir / which / "judge.json").read_text())
        assert record["complete"] and "test" in record["eval"]
    spk = json.loads((judge_dir / "speaker" / "judge.json").read_text())["eval"]["test"]
    assert 0.0 <= spk["eer"] <= 1.0 and spk["n_target"] == 2 and spk["n_nontarget"] == 4
    assert (judge_dir / "speaker" / "emb_test" / "spk.scp").is_file()
    content = json.loads((judge_dir / "content" / "judge.json").read_text())["eval"]["test"]
    assert content["ref_units"] == 16 and content["n_utts"] == 4

    weights = judge_dir / "speaker" / "judge.pt"
    before = weights.stat().st_mtime_ns
    capsys.readouterr()
    assert train_judge(judge_args(root, feats, data, conf, "speaker")) == 0
    assert weights.stat().st_mtime_ns == before  # up to date: neither trained nor rewritten

    out = exp / "disentangle_test"
    args = ["--expdir", str(exp), "--judge_dir", str(judge_dir), "--config", str(conf), "--train_feats", str(feats),
            "--train_data", str(data), "--test_feats", str(feats), "--test_data", str(data), "--outdir", str(out)]
    assert disentangle(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["probes"]) == {"z", "s"} and res["probes"]["z"]["ref_units"] == 16
    assert len(res["swap"]["draws"]) == 2 and set(res["swap"]["summary"]) >= {"swap", "random_s", "random_z"}
    stamp_time = (out / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    assert disentangle(args) == 0 and "up to date" in capsys.readouterr().out
    assert (out / "results.json").stat().st_mtime_ns == stamp_time

    from cdsvae.eval.report import write_experiment_report

    _, path = write_experiment_report(exp, "test", plots=False, demo=False)
    text = path.read_text()
    assert "## Disentanglement (test set)" in text and "| speaker judge (supervised reference) |" in text
    assert "content judge (supervised reference" in text and "| random s (s ~ p(s), z_B)" in text

    assert make_demo(["--expdir", str(exp), "--set", "test", "--judge_dir", str(judge_dir), "--data", str(data),
                      "--n_iter", "2"]) == 0
    demo = json.loads((exp / "demo" / "demo.json").read_text())
    captions = [f[0] if isinstance(f, list) else f["caption"] for f in demo["files"]]
    swaps = [c for c in captions if "decoded with s of" in c]
    assert len(swaps) == 2 and all("speaker judge: closer to" in c and "content judge:" in c for c in swaps)


def test_gate_and_bad_config(recipe, tmp_path, capsys):
    from cdsvae.bin.train_speech_judge import main as train_judge

    root, exp, feats, data, conf = recipe
    judge_dir = root / "exp" / "judge"
    if not (judge_dir / "content" / "judge.json").is_file():
        for which in ("speaker", "content"):
            train_judge(judge_args(root, feats, data, conf, which))
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump({**TINY, "gate": {"max_content_error": 0.0}}))
    with pytest.raises(UserError, match=r"content judge's unit error rate on test is .*above the gate of 0%"):
        train_judge(["--check", "--config", str(strict), "--judge_dir", str(judge_dir), "--test_data", str(data)])
    loose = tmp_path / "loose.yaml"
    loose.write_text(yaml.safe_dump({**TINY, "gate": {"max_content_error": 100.0, "max_speaker_eer": 100.0}}))
    assert train_judge(["--check", "--config", str(loose), "--judge_dir", str(judge_dir), "--test_data", str(data)]) == 0
    assert "gate: at most 100%" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "swap": {"n_pairs": 3, "pairs": 2}}))
    with pytest.raises(UserError, match=r"bad.yaml: section swap: unknown option\(s\) pairs"):
        train_judge(["--check", "--config", str(bad), "--judge_dir", str(judge_dir), "--test_data", str(data)])
    bad.write_text(yaml.safe_dump({**TINY, "content": {"hiden": 3}}))
    with pytest.raises(UserError, match=r"bad.yaml: section content: .*hiden"):
        train_judge(["--check", "--config", str(bad), "--judge_dir", str(judge_dir), "--test_data", str(data)])


def test_pretrained_speechbrain_speaker_judge(recipe, tmp_path):
    """--external: a speechbrain model directory is the speaker judge; nothing is trained."""
    import torch
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    from cdsvae.bin.train_speech_judge import main as train_judge
    from cdsvae.eval.speech_judges import load_speaker_judge_of
    from cdsvae.eval.speechbrain_judge import SpeechBrainSpeakerJudge
    from test_speaker_judge import HPARAMS

    root, exp, feats, data, conf = recipe
    torch.manual_seed(3)
    model_dir = tmp_path / "ecapa_pretrained"
    model_dir.mkdir()
    (model_dir / "hyperparams.yaml").write_text(HPARAMS)
    ecapa = ECAPA_TDNN(80, channels=[16, 16, 16, 16, 48], attention_channels=8, se_channels=8, res2net_scale=4,
                       lin_neurons=24)
    torch.save(ecapa.state_dict(), model_dir / "embedding_model.ckpt")
    out = tmp_path / "judge" / "speaker"
    args = judge_args(root, feats, data, conf, "speaker")
    args[args.index("--outdir") + 1] = str(out)
    assert train_judge(args + ["--external", str(model_dir)]) == 0
    record = json.loads((out / "judge.json").read_text())
    assert record["external"] and record["model"] == str(model_dir.resolve()) and "test" in record["eval"]
    assert not (out / "judge.pt").exists() and (out / "emb_test" / "spk.scp").is_file()
    assert isinstance(load_speaker_judge_of(out), SpeechBrainSpeakerJudge)
    with pytest.raises(UserError, match="only for --judge speaker"):
        train_judge(judge_args(root, feats, data, conf, "content") + ["--external", str(model_dir)])
