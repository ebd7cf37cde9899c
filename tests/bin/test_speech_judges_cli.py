"""Stage 5's judges and stage 6's disentanglement metrics through their CLIs, on a tiny experiment:
files written, reruns up to date, the gate, and the judged listening demo."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _experiments import trained_speech_exp  # noqa: E402
from cdsvae.io import UserError

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

    from cdsvae.eval.report.speech import write_experiment_report

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


def test_without_transcripts_the_speaker_judge_alone_judges_and_content_is_not_measured(recipe, tmp_path, capsys):
    """A corpus without units: the speaker judge trains and passes its gate alone, the metrics
    and the demo are speaker-side, and the report marks content as not measured."""
    from cdsvae.bin.disentangle import main as disentangle
    from cdsvae.bin.make_demo import main as make_demo
    from cdsvae.bin.train_speech_judge import main as train_judge
    from cdsvae.eval.report.speech import write_experiment_report

    root, exp, feats, data, conf = recipe
    exp = Path(shutil.copytree(exp, tmp_path / "exp" / exp.name))
    shutil.rmtree(exp / "disentangle_test", ignore_errors=True)
    bare = tmp_path / "data" / "test"
    bare.mkdir(parents=True)
    shutil.copy(data / "utt2spk", bare / "utt2spk")  # no units: no transcripts
    judge_dir = tmp_path / "exp" / "judge"
    assert train_judge(judge_args(tmp_path, feats, bare, conf, "speaker")) == 0
    with pytest.raises(UserError, match="judge/content/judge.json: no content judge figures"):
        train_judge(["--check", "--config", str(conf), "--judge_dir", str(judge_dir), "--test_data", str(bare)])
    capsys.readouterr()
    assert train_judge(["--check", "--config", str(conf), "--judge_dir", str(judge_dir), "--test_data", str(bare),
                        "--content", "false"]) == 0
    assert capsys.readouterr().out.count("\n") == 1  # the speaker judge's line alone

    args = ["--expdir", str(exp), "--judge_dir", str(judge_dir), "--config", str(conf), "--train_feats", str(feats),
            "--train_data", str(bare), "--test_feats", str(feats), "--test_data", str(bare),
            "--outdir", str(exp / "disentangle_test")]
    with pytest.raises(UserError, match="no finished content judge"):
        disentangle(args)
    assert disentangle([*args, "--content", "false"]) == 0
    assert "content not measured (no transcripts)" in capsys.readouterr().out
    res = json.loads((exp / "disentangle_test" / "results.json").read_text())
    assert res["content"] is False and res["probes"] is None and len(res["swap"]["draws"]) == 2
    for variant in ("swap", "random_s", "random_z"):
        assert len(res["swap"]["summary"][variant]["speaker"]) == 2
        assert "content_error" not in res["swap"]["summary"][variant]

    _, path = write_experiment_report(exp, "test", plots=False, demo=False)
    text = path.read_text()
    assert "| not measured | not measured |" in text and "| content judge (no transcripts: not trained) |" in text

    assert make_demo(["--expdir", str(exp), "--set", "test", "--judge_dir", str(judge_dir), "--data", str(bare),
                      "--content", "false", "--n_iter", "2"]) == 0
    demo = json.loads((exp / "demo" / "demo.json").read_text())
    captions = [f[0] if isinstance(f, list) else f["caption"] for f in demo["files"]]
    swaps = [c for c in captions if "decoded with s of" in c]
    assert len(swaps) == 2 and all("speaker judge: closer to" in c and "content judge" not in c for c in swaps)


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
    with pytest.raises(UserError, match=r"bad.yaml: unknown key 'swap.pairs'; valid keys in 'swap': n_draws, n_pairs, seed"):
        train_judge(["--check", "--config", str(bad), "--judge_dir", str(judge_dir), "--test_data", str(data)])
    bad.write_text(yaml.safe_dump({**TINY, "content": {"hiden": 3}}))
    with pytest.raises(UserError, match=r"bad.yaml: unknown key 'content.hiden'; valid keys in 'content': "):
        train_judge(["--check", "--config", str(bad), "--judge_dir", str(judge_dir), "--test_data", str(data)])


def test_pretrained_speechbrain_speaker_judge(recipe, tmp_path):
    """--external: a speechbrain model directory is the speaker judge; nothing is trained."""
    import torch
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    from cdsvae.bin.train_speech_judge import main as train_judge
    from cdsvae.eval.judges.speech import load_speaker_judge_of
    from cdsvae.eval.judges.speechbrain import SpeechBrainSpeakerJudge
    from _speechbrain import HPARAMS

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


def write_judge_records(judge_dir: Path, speaker_eer: float, content_error: float) -> None:
    """judge.json of both judges with test figures, as stage 5 writes them."""
    from cdsvae.eval.judges.speech import write_judge_record

    for kind, description, figures in (
            ("speaker", "ECAPA-TDNN speaker judge (channels [256, 256, 256, 256, 768], 128-dim, 12 training speakers, "
                        "15 epochs)", {"eer": speaker_eer}),
            ("content", "CTC conv front-end + 2x192 BiLSTM, 101 units, 240 training utterances",
             {"error_rate": content_error})):
        (judge_dir / kind).mkdir(parents=True, exist_ok=True)
        write_judge_record(judge_dir / kind, {"kind": kind, "description": description, "complete": True,
                                              "eval": {"test": figures}})


def test_a_missed_gate_names_the_recipes_cpu_judges_and_labels_are_not_doubled(tmp_path, capsys, monkeypatch):
    """VCTK: a content judge at 96 % against the gate of conf/judges.yaml points to
    conf/tuning/judges_cpu.yaml beside "train it longer or larger"; the CPU file itself points
    nowhere else. Each judge is named once: "ECAPA-TDNN speaker judge (...)", not
    "speaker judge (ECAPA-TDNN speaker judge (...))"."""
    from cdsvae.bin.train_speech_judge import main as train_judge

    vctk = Path(__file__).resolve().parents[2] / "egs" / "vctk" / "cdsvae1"
    monkeypatch.chdir(vctk)
    judge_dir = tmp_path / "judge"
    write_judge_records(judge_dir, 0.02, 0.96)
    check = ["--check", "--judge_dir", str(judge_dir), "--test_data", str(tmp_path / "data" / "test")]
    with pytest.raises(UserError) as e:
        train_judge([*check, "--config", "conf/judges.yaml"])
    assert str(e.value) == (f"{judge_dir / 'content'}: the content judge's unit error rate on test is 96.00%, above "
                            "the gate of 40% (conf/judges.yaml: gate.max_content_error); train it longer or larger "
                            "(section content; for a CPU run or a small subset, --judge_conf "
                            "conf/tuning/judges_cpu.yaml) or check its data")
    out = capsys.readouterr().out
    assert out.startswith("ECAPA-TDNN speaker judge (channels [256, 256, 256, 256, 768], 128-dim, 12 training "
                          "speakers, 15 epochs): EER 2.00% on test (gate: at most 10%)\n")
    assert "speaker judge (ECAPA" not in out
    with pytest.raises(UserError) as e:
        train_judge([*check, "--config", "conf/tuning/judges_cpu.yaml"])
    assert "train it longer or larger (section content) or check its data" in str(e.value)
    write_judge_records(judge_dir, 0.02, 0.30)
    capsys.readouterr()
    assert train_judge([*check, "--config", "conf/tuning/judges_cpu.yaml"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "content judge (CTC conv front-end + 2x192 BiLSTM, 101 units, 240 training utterances): unit error rate "
        "30.00% on test (gate: at most 40%)")


def test_vctk_cpu_judges_are_a_fraction_of_the_gpu_ones_with_the_same_gates():
    from cdsvae.eval.judges.ctc import CTCConfig, build_model
    from cdsvae.eval.judges.speaker import SpeakerJudgeConfig, _build
    from cdsvae.eval.judges.speech import read_judge_config

    conf = Path(__file__).resolve().parents[2] / "egs" / "vctk" / "cdsvae1" / "conf"
    gpu, cpu = (read_judge_config(conf / name) for name in ("judges.yaml", "tuning/judges_cpu.yaml"))
    assert cpu["gate"] == gpu["gate"]

    def size(cfg):
        speaker = _build(SpeakerJudgeConfig.from_dict(cfg["speaker"]), 80, 100)[0]
        content = build_model(80, 301, CTCConfig.from_dict(cfg["content"]))
        return [sum(p.numel() for p in m.parameters()) for m in (speaker, content)]

    (gpu_spk, gpu_ctc), (cpu_spk, cpu_ctc) = size(gpu), size(cpu)
    assert cpu_spk < gpu_spk / 3 and cpu_ctc < gpu_ctc / 2
    assert cpu["speaker"]["batch_size"] * cpu["speaker"]["crop_frames"] <= \
        gpu["speaker"]["batch_size"] * gpu["speaker"]["crop_frames"] / 2
