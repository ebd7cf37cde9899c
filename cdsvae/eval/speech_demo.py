"""The speech listening demo: what a trained model sounds like, as wav files.

Utterances A and B of two speakers are encoded; their reconstructions and A's z decoded with
B's s are turned back into audio (:func:`cdsvae.fbank.logmel_to_waveform`: inverse mel
filterbank and Griffin-Lim) next to A and B as fed to the model. ``make_speech_demo`` writes them under
``exp/<tag>/demo/`` with the index of :mod:`cdsvae.eval.demo`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cdsvae.errors import UserError
from cdsvae.eval.demo import Demo, demo_dir, write_demo
from cdsvae.fbank import load_fbank_config, logmel_to_waveform
from cdsvae.io import atomic_write_bytes


def _write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> Path:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, sample_rate, format="WAV", subtype="PCM_16")
    atomic_write_bytes(path, buf.getvalue())
    return path


def pick_demo_pair(utt2spk: Mapping[str, str]) -> tuple[str, str] | None:
    """First utterance of the first speaker (A) and of the second speaker (B), in sorted order."""
    first: dict[str, str] = {}
    for utt in sorted(utt2spk):
        first.setdefault(utt2spk[utt], utt)
    speakers = sorted(first)
    if len(speakers) < 2:
        return None
    return first[speakers[0]], first[speakers[1]]


def listening_demo(
    expdir: str | os.PathLike,
    test_set: str,
    outdir: str | os.PathLike,
    feats_dir: str | os.PathLike | None = None,
    max_segments: int = 40,
    n_iter: int = 32,
) -> tuple[list[tuple[str, Path]], str]:
    """Wav files: A and B as fed to the model, their reconstructions, and A's z decoded with B's s.

    Returns ``(caption, path)`` pairs and a note for the report; a demo that cannot be made
    (one speaker, no fbank config) gives a note saying why instead of files.
    """
    import kaldiio
    import torch

    from cdsvae.data.datadir import read_utt2spk
    from cdsvae.data.feats import CMVNStats
    from cdsvae.eval.embeddings import cut_segments, speech_model_settings
    from cdsvae.train.task import load_model

    expdir, outdir = Path(expdir), Path(outdir)
    emb_dir = expdir / f"emb_{test_set}"
    meta_path = emb_dir / "meta.json"
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: not found (run the embedding stage first)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    feats_dir = Path(feats_dir or meta["feats"])
    fbank_path = feats_dir / "fbank.yaml"
    if not fbank_path.is_file():
        return [], f"No demo: {fbank_path} (the feature options) is missing, so the features cannot be inverted."
    utt2spk = read_utt2spk(emb_dir / "utt2spk")
    pair = pick_demo_pair(utt2spk)
    if pair is None:
        return [], f"No demo: the {test_set} set has a single speaker."
    fbank_cfg = load_fbank_config(fbank_path)
    model, cfg = load_model(expdir)
    _, normalise = speech_model_settings(cfg, expdir)
    segment_frames = int(meta["segment_frames"])
    cmvn_path = cfg.get("data", {}).get("cmvn")
    if cmvn_path is not None:
        stats = CMVNStats.load(cmvn_path)
        mean, std = stats.mean.astype(np.float32), stats.std.astype(np.float32)
    else:
        mean, std = np.float32(0.0), np.float32(1.0)

    from cdsvae.data.datadir import read_scp

    scp = read_scp(feats_dir / "feats.scp")
    inputs, segs = {}, {}
    for utt in pair:
        if utt not in scp:
            raise UserError(f"{feats_dir / 'feats.scp'}: no features for demo utterance {utt}")
        mat = np.asarray(kaldiio.load_mat(scp[utt]), dtype=np.float32)
        s = cut_segments(normalise(mat), segment_frames)[:max_segments]
        segs[utt] = torch.from_numpy(np.ascontiguousarray(s))
        inputs[utt] = mat[: s.shape[0] * segment_frames]

    def frames(x: torch.Tensor) -> np.ndarray:
        return x.reshape(-1, x.shape[-1]).numpy() * std + mean

    a, b = pair
    with torch.no_grad():
        enc = {u: model.encode(segs[u]) for u in pair}
        s_utt = {u: enc[u].s_mean.mean(dim=0, keepdim=True) for u in pair}
        recon = {u: model.decode(s_utt[u].expand(segs[u].shape[0], -1), enc[u].z_mean) for u in pair}
        swapped = model.decode(s_utt[b].expand(segs[a].shape[0], -1), enc[a].z_mean)

    sr = int(fbank_cfg["sample_rate"])
    outputs = [
        ("A_input.wav", inputs[a], f"A = {a} (speaker {utt2spk[a]}): its features, inverted (vocoder reference)"),
        ("B_input.wav", inputs[b], f"B = {b} (speaker {utt2spk[b]}): its features, inverted (vocoder reference)"),
        ("A.wav", frames(recon[a]), "A reconstructed by the model (s of A, z of A)"),
        ("B.wav", frames(recon[b]), "B reconstructed by the model (s of B, z of B)"),
        ("A_content_B_speaker.wav", frames(swapped), "z of A decoded with s of B: A's words in B's voice"),
    ]
    files = [
        (caption, _write_wav(outdir / name, logmel_to_waveform(feats, fbank_cfg, n_iter), sr))
        for name, feats, caption in outputs
    ]
    note = (
        f"Utterance A = {a} (speaker {utt2spk[a]}), B = {b} (speaker {utt2spk[b]}) of the {test_set} set; the first "
        f"{segs[a].shape[0]} segments of {segment_frames} frames. s is averaged over each utterance's segments, "
        "z is kept per frame. Decoded log-mel frames are turned into audio with Griffin-Lim "
        f"({n_iter} iterations), so all files share its artefacts; compare them with the *_input.wav references."
    )
    return files, note


def make_speech_demo(
    expdir: str | os.PathLike,
    test_set: str = "test",
    feats_dir: str | os.PathLike | None = None,
    outdir: str | os.PathLike | None = None,
    max_segments: int = 40,
    n_iter: int = 32,
) -> Demo:
    """The listening demo of ``expdir`` in ``outdir`` (default ``<expdir>/demo``), indexed by demo.json."""
    outdir = Path(outdir) if outdir is not None else demo_dir(expdir)
    files, note = listening_demo(expdir, test_set, outdir, feats_dir, max_segments, n_iter)
    demo = Demo(kind="speech", files=files, note=note, source=test_set)
    write_demo(outdir, demo)
    return demo
