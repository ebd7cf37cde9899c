"""The packed model and the Disentangler: what stages 5 and 7 computed, from audio files, with the
recipe directory gone; a packed model from an unknown source cannot run code."""

from __future__ import annotations

import json
import shutil
import tarfile

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from _packed import frames, packed_speech, packed_video
from _signals import harmonic_wave
from cdsvae.io import UserError


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return packed_speech(tmp_path_factory.mktemp("speech"))


def test_import_cdsvae_stays_light_and_gives_the_disentangler():
    import subprocess
    import sys

    code = "import cdsvae, sys; assert 'torch' not in sys.modules; from cdsvae import Disentangler; print(Disentangler.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Disentangler"


def test_packed_dir_and_tarball_hold_what_inference_needs(speech):
    exp, packed, _ = speech
    assert sorted(p.name for p in packed.iterdir()) == ["README.md", "cmvn.npz", "config.yaml", "fbank.yaml",
                                                        "model.pt", "packed.json"]
    manifest = json.loads((packed / "packed.json").read_text())
    assert manifest["modality"] == "speech" and manifest["segment_frames"] == 10
    assert manifest["checkpoint"]["file"] == "checkpoints/step000000001.pt"
    state = torch.load(packed / "model.pt", weights_only=True)
    assert set(state) == {"format", "model"}  # weights only: no optimiser, no RNG state
    readme = (packed / "README.md").read_text()
    assert "| test |" in readme and "python -m cdsvae.bin.pack --expdir" in readme
    with tarfile.open(f"{packed}.tar.gz") as tar:
        assert sorted(tar.getnames()) == sorted(f"packed/{p.name}" for p in packed.iterdir())


def test_encode_equals_the_stage_5_embeddings_without_the_recipe_dir(speech, tmp_path):
    from cdsvae import Disentangler

    exp, packed, wavs = speech
    moved = tmp_path / "elsewhere.tar.gz"
    shutil.copy(f"{packed}.tar.gz", moved)
    s_ref = kaldiio.load_scp(str(exp / "emb_test" / "s.scp"))
    z_ref = kaldiio.load_scp(str(exp / "emb_test" / "z.scp"))
    for source in (packed, moved):
        model = Disentangler.from_packed(source)
        for utt, wav in wavs.items():
            s, z = model.encode(wav)
            np.testing.assert_allclose(s, s_ref[utt], atol=1e-5, rtol=0)
            assert z.shape == (50, 3)  # 58 frames: 5 whole segments of 10
            np.testing.assert_allclose(z.mean(axis=0), z_ref[utt], atol=1e-5, rtol=0)
    samples, _ = sf.read(wavs["spkA_u0"], dtype="float32")
    np.testing.assert_allclose(model.encode(samples).s, s_ref["spkA_u0"], atol=1e-5, rtol=0)


def test_swap_equals_the_stage_7_listening_demo(speech, tmp_path):
    from cdsvae import Disentangler
    from cdsvae.eval.demo.speech import listening_demo

    exp, packed, wavs = speech
    files = listening_demo(exp, "test", tmp_path / "demo", n_iter=4).files
    demo = {p.name: p for _, p in files}
    model = Disentangler.from_packed(packed, n_iter=4)
    swap = model.swap(content=wavs["spkA_u0"], speaker=wavs["spkB_u0"])  # the demo's A and B
    assert swap.features.shape == (50, 16) and swap.sample_rate == 16000
    ref, rate = sf.read(demo["A_content_B_speaker.wav"], dtype="float32")
    assert rate == 16000 and ref.shape == swap.waveform.shape
    np.testing.assert_allclose(swap.waveform, ref, atol=2 / 32768, rtol=0)  # the demo wav is 16-bit
    swap.write(tmp_path / "c.wav")
    assert sf.info(str(tmp_path / "c.wav")).frames == ref.size


def test_resampling_only_when_allowed_and_short_audio_is_named(speech, tmp_path):
    from cdsvae import Disentangler

    _, packed, _ = speech
    model = Disentangler.from_packed(packed)
    wav8k = tmp_path / "a8k.wav"
    sf.write(wav8k, harmonic_wave(110.0, 0.6, sr=8000), 8000)
    with pytest.raises(UserError, match=r"sample rate 8000 Hz, the model's features are at 16000 Hz.*a8k.wav"):
        model.encode(wav8k)
    assert model.encode(wav8k, resample=True).z.shape[0] == 50
    short = tmp_path / "short.wav"
    sf.write(short, harmonic_wave(110.0, 0.1), 16000)
    with pytest.raises(UserError, match=r"too short: 8 frames .* one segment of 10 frames.*short.wav"):
        model.encode(short)


def test_a_tarball_with_a_pickled_object_is_refused_and_runs_nothing(speech, tmp_path):
    from cdsvae.packed import read_packed

    _, packed, _ = speech
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil"
    shutil.copytree(packed, evil / "packed")
    with open(evil / "packed" / "model.pt", "wb") as f:
        torch.save({"format": "cdsvae-packed", "model": Payload()}, f)
    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tar:
        tar.add(evil / "packed", arcname="packed")
    with pytest.raises(UserError) as e:
        read_packed(tmp_path / "evil.tar.gz")
    assert "refusing to load" in str(e.value) and "(io.open)" in str(e.value)
    assert "\n" not in str(e.value) and not marker.exists()


def test_not_a_packed_model_is_named(tmp_path):
    from cdsvae.packed import read_packed

    with pytest.raises(UserError, match="packed model not found"):
        read_packed(tmp_path / "nope")
    with pytest.raises(UserError, match="not a packed model"):
        read_packed(tmp_path)


def test_video_encode_and_swap(tmp_path):
    from cdsvae import Disentangler

    exp, packed = packed_video(tmp_path)
    assert sorted(p.name for p in packed.iterdir()) == ["README.md", "config.yaml", "model.pt", "packed.json"]
    model = Disentangler.from_packed(f"{packed}.tar.gz")
    a, b = frames(4, seed=0), frames(6, seed=1)
    s, z = model.encode(a)
    assert s.shape == (3,) and z.shape == (4, 2)
    np.testing.assert_allclose(model.encode(a.astype(np.float32) / 255).s, s, atol=1e-6)
    with torch.no_grad():
        enc = model.model.encode(torch.from_numpy(a.astype(np.float32) / 255)[None])
        want = model.model.decode(enc.s_mean, model.model.encode(torch.from_numpy(b.astype(np.float32) / 255)[None]).z_mean)
    swap = model.swap(content=a, motion=b)
    assert swap.features.shape == (6, 1, 64, 64) and swap.waveform is None
    np.testing.assert_allclose(swap.features, want[0].numpy(), atol=1e-6)
    with pytest.raises(UserError, match=r"expected frames \(T, 1, 64, 64\)"):
        model.encode(frames(4, c=3))
    with pytest.raises(UserError, match="needs a speech model; this is a video model"):
        model.encode("a.wav")


def readme_section_blocks(lang):
    """The ``lang`` fenced blocks of README.md's "Use a trained model" section."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use a trained model", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def test_the_readme_example_runs_as_written(speech, tmp_path, monkeypatch, capsys):
    import shlex

    from cdsvae.bin import convert, embed

    _, packed, wavs = speech
    monkeypatch.chdir(tmp_path)
    shutil.copy(wavs["spkA_u0"], "A.wav")
    shutil.copy(wavs["spkB_u0"], "B.wav")
    (tmp_path / "wav.scp").write_text(f"spkA_u0 {wavs['spkA_u0']}\nspkB_u0 {wavs['spkB_u0']}\n")
    (python,) = readme_section_blocks("python")
    assert len(python.strip().splitlines()) == 5
    where = "egs/mini/cdsvae1/exp/cdsvae/packed"
    scope: dict = {}
    exec(compile(python.replace(where, str(packed)), "README.md", "exec"), scope)
    s_ref = kaldiio.load_scp(str(speech[0] / "emb_test" / "s.scp"))["spkA_u0"]
    np.testing.assert_allclose(scope["s"], s_ref, atol=1e-5)
    assert sf.info("C.wav").frames == scope["swap"].waveform.size
    (shell,) = readme_section_blocks("sh")
    for line in shell.strip().splitlines():
        argv = shlex.split(line.split("#")[0].replace(where, str(packed)))
        assert argv[:2] == ["python", "-m"]
        main = {"cdsvae.bin.embed": embed.main, "cdsvae.bin.convert": convert.main}[argv[2]]
        assert main(argv[3:]) == 0
    assert (tmp_path / "out" / "s.scp").is_file() and (tmp_path / "C.wav").is_file()
