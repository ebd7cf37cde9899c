"""The speech listening demo: the wav files with their index (the inverse filterbank: tests/test_fbank.py)."""

import json

import numpy as np
import pytest

from _experiments import DEMO_PNGS, DEMO_WAVS, assert_png, trained_speech_exp
from cdsvae.eval.demo.speech import make_speech_demo, pick_demo_pair


def test_listening_demo_writes_wavs_indexed_in_demo_json(tmp_path):
    import soundfile as sf

    from cdsvae.eval.report.speech import write_recipe_report

    exp = trained_speech_exp(tmp_path)
    demo = make_speech_demo(exp, "test")

    out = exp / "demo"
    names = DEMO_WAVS
    assert sorted(p.name for p in out.iterdir()) == sorted(names + DEMO_PNGS + ["demo.json"])
    assert [p.name for _, p in demo.files] == names
    # each file has its log-mel picture, indexed next to it
    assert {k: v.name for k, v in demo.images.items()} == dict(zip(DEMO_WAVS, DEMO_PNGS))
    for png in DEMO_PNGS:
        assert_png(out / png)
    lengths = {}
    for name in names:
        wave, sr = sf.read(out / name)
        assert sr == 16000 and np.isfinite(wave).all() and np.abs(wave).max() > 0.1
        lengths[name] = len(wave)
    # 58 frames -> 5 segments of 10 frames -> 50 frames of 160 samples (minus one hop, centred ISTFT)
    assert lengths["A.wav"] == lengths["A_content_B_speaker.wav"] == lengths["A_input.wav"] == 49 * 160
    index = json.loads((out / "demo.json").read_text())
    assert index["kind"] == "speech" and index["source"] == "test"
    assert [e["file"] for e in index["files"]] == names and [e["image"] for e in index["files"]] == DEMO_PNGS
    assert "A = spkA_u0 (speaker spkA)" in index["note"] and "B = spkB_u0 (speaker spkB)" in index["note"]
    assert index["files"][4]["caption"] == "z of A decoded with s of B: A's words in B's voice"

    # the report links what the demo step made
    write_recipe_report([exp], tmp_path / "RESULTS.md", plots=True, demo=True)
    text = (exp / "RESULTS.md").read_text()
    assert "## Listening demo" in text
    assert "A = spkA_u0 (speaker spkA)" in text and "B = spkB_u0 (speaker spkB)" in text
    for name in names:
        assert f"[{name}](demo/{name})" in text
    assert "| C-DSVAE | cdsvae_tiny |" in (tmp_path / "RESULTS.md").read_text()


def test_no_demo_without_feature_options_or_a_second_speaker(tmp_path):
    exp = trained_speech_exp(tmp_path)
    make_speech_demo(exp, "test", n_iter=2)
    fbank = tmp_path / "dump" / "test" / "fbank.yaml"
    fbank.rename(fbank.with_suffix(".bak"))
    demo = make_speech_demo(exp, "test")
    assert demo.files == [] and demo.note.startswith(f"No demo: {fbank} (the feature options) is missing")
    # the earlier demo's files are gone with it: the directory holds what its index says
    assert sorted(p.name for p in (exp / "demo").iterdir()) == ["demo.json"]
    assert json.loads((exp / "demo" / "demo.json").read_text())["note"] == demo.note
    fbank.with_suffix(".bak").rename(fbank)
    (exp / "emb_test" / "utt2spk").write_text("spkA_u0 spkA\nspkA_u1 spkA\n")
    assert make_speech_demo(exp, "test").note == "No demo: the test set has a single speaker."


def test_demo_needs_the_embeddings_of_its_set(tmp_path):
    from cdsvae.io import UserError

    exp = trained_speech_exp(tmp_path)
    with pytest.raises(UserError, match="emb_dev/meta.json: not found"):
        make_speech_demo(exp, "dev")


def test_demo_pair_is_the_first_utterance_of_the_first_two_speakers():
    assert pick_demo_pair({"b_2": "b", "a_9": "a", "b_1": "b", "a_3": "a", "c_0": "c"}) == ("a_3", "b_1")
    assert pick_demo_pair({"a_1": "a", "a_2": "a"}) is None
