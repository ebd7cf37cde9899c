"""cdsvae.bin.pack, embed and convert on a tiny packed model: outputs equal the API's, and each
bad input is one line on stderr and exit status 1."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from _packed import packed_speech, packed_video
from _signals import harmonic_wave
from cdsvae.bin import run_main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return packed_speech(tmp_path_factory.mktemp("speech"))


def run(main, argv, capsys):
    """(exit status, stdout, the stderr lines that are not progress bars)."""
    with pytest.raises(SystemExit) as e:
        run_main(main, argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and not ln.startswith(("embed:  ", "embed: 1", "embed: 0"))]
    return e.value.code, out, [ln for ln in lines if "error" in ln or "Traceback" in ln]


def bad_inputs(root):
    """{name: (path, why)}: missing, not audio, 8 kHz, too short."""
    (root / "junk.wav").write_bytes(b"this is not audio at all")
    sf.write(root / "a8k.wav", harmonic_wave(110.0, 0.6, sr=8000), 8000)
    sf.write(root / "short.wav", harmonic_wave(110.0, 0.1), 16000)
    return {"missing": (root / "nope.wav", "audio file not found"), "junk": (root / "junk.wav", "unknown audio format"),
            "rate": (root / "a8k.wav", "sample rate 8000 Hz"), "short": (root / "short.wav", "too short")}


def test_pack_cli_writes_the_dir_and_tarball(speech, tmp_path, capsys):
    from cdsvae.bin.pack import main

    exp, _, _ = speech
    code, out, _ = run(main, ["--expdir", str(exp), "--outdir", str(tmp_path / "p")], capsys)
    assert code == 0 and (tmp_path / "p" / "model.pt").is_file() and (tmp_path / "p.tar.gz").is_file()
    code, _, err = run(main, ["--expdir", str(tmp_path / "none")], capsys)
    assert code == 1 and len(err) == 1 and err[0].startswith("pack: error: ")


def test_embed_writes_s_and_z_as_the_api_with_two_jobs_and_skips_bad_files(speech, tmp_path, capsys):
    from cdsvae import Disentangler
    from cdsvae.bin.embed import main

    _, packed, wavs = speech
    bad = bad_inputs(tmp_path)
    scp = tmp_path / "wav.scp"
    entries = {**{u: str(p) for u, p in wavs.items()}, **{f"x_{k}": str(p) for k, (p, _) in bad.items()}}
    scp.write_text("".join(f"{u} {p}\n" for u, p in entries.items()))
    code, out, _ = run(main, [str(packed), str(scp), str(tmp_path / "out"), "--nj", "2", "--skip_bad", "true"], capsys)
    assert code == 0 and "skipped 4" in out
    s = kaldiio.load_scp(str(tmp_path / "out" / "s.scp"))
    z = kaldiio.load_scp(str(tmp_path / "out" / "z.scp"))
    assert list(s) == list(wavs) and list(z) == list(wavs)
    model = Disentangler.from_packed(packed)
    for utt, wav in wavs.items():
        want = model.encode(wav)
        np.testing.assert_allclose(s[utt], want.s, atol=1e-6)
        np.testing.assert_allclose(z[utt], want.z, atol=1e-6)
    listed = dict(line.split(" ", 1) for line in (tmp_path / "out" / "bad_utts").read_text().splitlines())
    assert sorted(listed) == sorted(f"x_{k}" for k in bad)
    for k, (_, why) in bad.items():
        assert why in listed[f"x_{k}"]

    code, _, err = run(main, [str(packed), str(scp), str(tmp_path / "out2")], capsys)
    assert code == 1 and len(err) == 1 and "audio file not found" in err[0] and "--skip_bad true" in err[0]
    assert not (tmp_path / "out2" / "s.scp").exists()


def test_convert_writes_audio_and_resamples_only_when_asked(speech, tmp_path, capsys):
    from cdsvae.bin.convert import main

    _, packed, wavs = speech
    bad = bad_inputs(tmp_path)
    out = tmp_path / "c.wav"
    code, stdout, _ = run(main, [str(packed), "--content", str(wavs["spkA_u0"]), "--speaker", str(wavs["spkB_u0"]),
                                 "--out", str(out), "--n_iter", "2"], capsys)
    assert code == 0 and "wrote" in stdout
    info = sf.info(str(out))
    assert info.samplerate == 16000 and info.frames > 7000
    for key, (path, why) in bad.items():
        for flag in ("--content", "--speaker"):
            other = "--speaker" if flag == "--content" else "--content"
            code, _, err = run(main, [str(packed), flag, str(path), other, str(wavs["spkA_u0"]), "--out",
                                      str(tmp_path / "x.wav"), "--n_iter", "2"], capsys)
            assert code == 1 and len(err) == 1 and err[0].startswith("convert: error: ") and why in err[0], err
            assert str(path) in err[0]
    code, _, _ = run(main, [str(packed), "--content", str(bad["rate"][0]), "--speaker", str(wavs["spkA_u0"]),
                            "--out", str(tmp_path / "r.wav"), "--resample", "--n_iter", "2"], capsys)
    assert code == 0 and sf.info(str(tmp_path / "r.wav")).samplerate == 16000
    assert not (tmp_path / "x.wav").exists()


def test_a_video_model_is_refused_by_the_audio_tools(tmp_path, capsys):
    from cdsvae.bin import convert, embed

    _, packed = packed_video(tmp_path)
    (tmp_path / "wav.scp").write_text("u a.wav\n")
    for main, argv in ((convert.main, ["--content", "a.wav", "--speaker", "b.wav", "--out", str(tmp_path / "c.wav")]),
                       (embed.main, [str(tmp_path / "wav.scp"), str(tmp_path / "out")])):
        for source in (packed, f"{packed}.tar.gz"):
            args = [str(source), *argv] if main is convert.main else [str(source), *argv]
            code, _, err = run(main, args, capsys)
            assert code == 1 and len(err) == 1 and "needs a speech model; this is a video model" in err[0]


def test_resampling_follows_the_models_fbank_yaml_unless_resample_says_otherwise(speech, tmp_path, capsys):
    """A model trained on resampled audio (VCTK's conf/fbank.yaml: 48 kHz FLAC read at 16 kHz) takes
    48 kHz input as it is; --resample false refuses it; a 16 kHz-only model needs --resample; the
    help says so."""
    import yaml

    from cdsvae.bin import convert, embed
    from cdsvae.experiment.pack import write_packed

    exp, plain, _ = speech
    fbank = yaml.safe_load((exp.parents[1] / "dump" / "test" / "fbank.yaml").read_text())
    vctk = yaml.safe_load((REPO / "egs" / "vctk" / "cdsvae1" / "conf" / "fbank.yaml").read_text())
    assert vctk["resample"] is True and not fbank.get("resample")
    (tmp_path / "fbank.yaml").write_text(yaml.safe_dump({**fbank, "resample": True}))
    resampling = write_packed(exp, tmp_path / "packed_48k", fbank=tmp_path / "fbank.yaml")
    flac = {}
    for spk, f0 in (("p225", 110.0), ("p226", 220.0)):  # VCTK 0.92 names, 48 kHz FLAC
        flac[spk] = tmp_path / f"{spk}_001_mic1.flac"
        sf.write(flac[spk], harmonic_wave(f0, 0.6, sr=48000), 48000, format="FLAC")
    pair = ["--content", str(flac["p225"]), "--speaker", str(flac["p226"]), "--n_iter", "2"]

    code, stdout, _ = run(convert.main, [str(resampling), *pair, "--out", str(tmp_path / "a.wav")], capsys)
    assert code == 0 and "wrote" in stdout and sf.info(str(tmp_path / "a.wav")).samplerate == 16000
    for packed, flag in ((resampling, ["--resample", "false"]), (plain, [])):
        code, _, err = run(convert.main, [str(packed), *pair, *flag, "--out", str(tmp_path / "x.wav")], capsys)
        assert code == 1 and len(err) == 1 and "sample rate 48000 Hz" in err[0] and str(flac["p226"]) in err[0]
    for flag in (["--resample"], ["--resample", "true"]):
        code, _, _ = run(convert.main, [str(plain), *pair, *flag, "--out", str(tmp_path / "b.wav")], capsys)
        assert code == 0 and sf.info(str(tmp_path / "b.wav")).samplerate == 16000

    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{spk}_001 {path}\n" for spk, path in flac.items()))
    code, _, _ = run(embed.main, [str(resampling), str(scp), str(tmp_path / "emb")], capsys)
    assert code == 0 and sorted(kaldiio.load_scp(str(tmp_path / "emb" / "s.scp"))) == ["p225_001", "p226_001"]
    code, _, err = run(embed.main, [str(resampling), str(scp), str(tmp_path / "emb2"), "--resample", "false"], capsys)
    assert code == 1 and "sample rate 48000 Hz" in err[0]

    for main in (convert.main, embed.main):
        with pytest.raises(SystemExit):
            main(["--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "default: the model's own setting, resample in its fbank.yaml; --resample alone: true" in text
        assert "fbank.yaml has ``resample: true``" in text


def test_stereo_44k_audio_is_mixed_down_and_resampled_by_convert_embed_and_the_api(speech, tmp_path, capsys):
    """A stereo 44.1 kHz recording, as people have it: with --resample, convert and embed take it
    (its channels mixed down, as the feature stage does); --channel picks one instead."""
    from cdsvae import Disentangler
    from cdsvae.bin import convert, embed

    _, packed, wavs = speech
    rate = 44100
    voice, other = harmonic_wave(110.0, 0.6, sr=rate), harmonic_wave(220.0, 0.6, sr=rate, seed=1)
    stereo = tmp_path / "stereo44k.wav"
    sf.write(stereo, np.stack([voice, other], 1), rate, subtype="FLOAT")
    sf.write(tmp_path / "mix44k.wav", (voice + other) / 2, rate, subtype="FLOAT")
    sf.write(tmp_path / "right44k.wav", other, rate, subtype="FLOAT")
    out = tmp_path / "c.wav"
    code, stdout, err = run(convert.main, [str(packed), "--content", str(stereo), "--speaker", str(wavs["spkB_u0"]),
                                           "--out", str(out), "--resample", "--n_iter", "2"], capsys)
    assert code == 0 and "wrote" in stdout and sf.info(str(out)).samplerate == 16000 and sf.info(str(out)).channels == 1
    code, _, err = run(convert.main, [str(packed), "--content", str(stereo), "--speaker", str(wavs["spkB_u0"]),
                                      "--out", str(tmp_path / "x.wav")], capsys)
    assert code == 1 and "sample rate 44100 Hz" in err[0] and not (tmp_path / "x.wav").exists()
    code, _, err = run(convert.main, [str(packed), "--content", str(stereo), "--speaker", str(wavs["spkB_u0"]),
                                      "--out", str(tmp_path / "x.wav"), "--resample", "--channel", "2"], capsys)
    assert code == 1 and len(err) == 1 and "channel 2 asked for, the audio has 1 channel " in err[0]
    assert str(wavs["spkB_u0"]) in err[0]

    model = Disentangler.from_packed(packed)
    mixed = model.encode(str(stereo), resample=True)
    np.testing.assert_allclose(mixed.s, model.encode(str(tmp_path / "mix44k.wav"), resample=True).s, atol=1e-4)
    right = model.encode(str(tmp_path / "right44k.wav"), resample=True).s
    np.testing.assert_allclose(model.encode(str(stereo), resample=True, channel=1).s, right, atol=1e-6)
    assert np.abs(mixed.s - right).max() > 1e-3
    samples = np.stack([voice, other], 1)
    np.testing.assert_allclose(model.encode(samples, sample_rate=rate, resample=True).s, mixed.s, atol=1e-4)

    scp = tmp_path / "wav.scp"
    scp.write_text(f"st {stereo}\n")
    for flags, want in (([], mixed.s), (["--channel", "1"], right)):
        code, _, err = run(embed.main, [str(packed), str(scp), str(tmp_path / "emb"), "--resample", *flags], capsys)
        assert code == 0, err
        np.testing.assert_allclose(kaldiio.load_scp(str(tmp_path / "emb" / "s.scp"))["st"], want, atol=1e-4)
