"""The speech listening demo: what a trained model sounds like, as wav files and log-mel pictures.

Utterances A and B of two speakers are encoded; their reconstructions, the swaps, and A's z or s
with the other factor drawn from its prior are turned back into audio (:func:`cdsvae.fbank.logmel_to_waveform`: inverse mel
filterbank and Griffin-Lim) next to A and B as fed to the model. ``make_speech_demo`` writes them under
``exp/<tag>/demo/`` with the index of :mod:`cdsvae.eval.demo.index`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cdsvae.audio import write_wav
from cdsvae.eval.demo.index import Demo, demo_dir, write_demo
from cdsvae.fbank import load_fbank_config, logmel_to_waveform
from cdsvae.io import UserError


def pick_demo_pair(utt2spk: Mapping[str, str]) -> tuple[str, str] | None:
    """First utterance of the first speaker (A) and of the second speaker (B), in sorted order."""
    first: dict[str, str] = {}
    for utt in sorted(utt2spk):
        first.setdefault(utt2spk[utt], utt)
    speakers = sorted(first)
    if len(speakers) < 2:
        return None
    return first[speakers[0]], first[speakers[1]]


def _segments_of(feats_dir: Path, pair: tuple[str, str], normalise, segment_frames: int, max_segments: int,
                 device: str):
    """The model's input segments of the demo utterances (at most ``max_segments`` each) and their raw
    log-mel frames over the same span."""
    import kaldiio
    import torch

    from cdsvae.data.datadir import read_scp
    from cdsvae.eval.metrics.embeddings import cut_segments

    scp = read_scp(feats_dir / "feats.scp")
    inputs, segs = {}, {}
    for utt in pair:
        if utt not in scp:
            raise UserError(f"{feats_dir / 'feats.scp'}: no features for demo utterance {utt}")
        mat = np.asarray(kaldiio.load_mat(scp[utt]), dtype=np.float32)
        s = cut_segments(normalise(mat), segment_frames)[:max_segments]
        segs[utt] = torch.from_numpy(np.ascontiguousarray(s)).to(device)
        inputs[utt] = mat[: s.shape[0] * segment_frames]
    return inputs, segs


def _decodings(model, segs, pair: tuple[str, str], seed: int) -> dict[str, Any]:
    """The model's decodings of the demo: reconstructions, both swaps, and A with s or z_1:T drawn."""
    import torch

    a, b = pair
    with torch.no_grad():
        enc = {u: model.encode(segs[u]) for u in pair}
        s_utt = {u: enc[u].s_mean.mean(dim=0, keepdim=True) for u in pair}
        recon = {u: model.decode(s_utt[u].expand(segs[u].shape[0], -1), enc[u].z_mean) for u in pair}
        swapped = model.decode(s_utt[b].expand(segs[a].shape[0], -1), enc[a].z_mean)
        swapped_ba = model.decode(s_utt[a].expand(segs[b].shape[0], -1), enc[b].z_mean)
        gen = torch.Generator().manual_seed(seed)
        n_a, t_a = enc[a].z_mean.shape[:2]
        random_s = model.decode(model.sample_s(1, generator=gen).expand(n_a, -1), enc[a].z_mean)
        random_z = model.decode(s_utt[a].expand(n_a, -1), model.sample_z_prior(n_a, t_a, generator=gen))
    return {"recon": recon, "swapped": swapped, "swapped_ba": swapped_ba, "random_s": random_s,
            "random_z": random_z}


def _captioned(inputs, dec: Mapping[str, Any], frames, pair: tuple[str, str], utt2spk: Mapping[str, str],
               seed: int, judges: "DemoJudges | None") -> list[tuple[str, np.ndarray, str]]:
    """(file name, log-mel frames, caption) of every file of the demo; with the judges' verdicts when given."""
    a, b = pair
    recon = dec["recon"]
    outputs = [
        ("A_input.wav", inputs[a], f"A = {a} (speaker {utt2spk[a]}): its features, inverted (vocoder reference)"),
        ("B_input.wav", inputs[b], f"B = {b} (speaker {utt2spk[b]}): its features, inverted (vocoder reference)"),
        ("A.wav", frames(recon[a]), "A reconstructed by the model (s of A, z of A)"),
        ("B.wav", frames(recon[b]), "B reconstructed by the model (s of B, z of B)"),
        ("A_content_B_speaker.wav", frames(dec["swapped"]), "z of A decoded with s of B: A's words in B's voice"),
        ("B_content_A_speaker.wav", frames(dec["swapped_ba"]), "z of B decoded with s of A: B's words in A's voice"),
        ("A_content_random_speaker.wav", frames(dec["random_s"]),
         f"z of A decoded with s drawn from p(s) (seed {seed}): A's words in a voice drawn at random"),
        ("A_speaker_random_content.wav", frames(dec["random_z"]),
         f"s of A decoded with z_1:T drawn from the learned prior (seed {seed}): A's voice, words drawn at random"),
    ]
    if judges is not None:
        # (wanted voice, the other voice, whose words): the judges' verdict on each file
        wanted = {"A_input.wav": (a, b, a), "B_input.wav": (b, a, b), "A.wav": (a, b, a), "B.wav": (b, a, b),
                  "A_content_B_speaker.wav": (b, a, a), "B_content_A_speaker.wav": (a, b, b),
                  "A_content_random_speaker.wav": (None, None, a), "A_speaker_random_content.wav": (a, b, None)}
        outputs = [(name, feats, "; ".join(x for x in (caption, judges.verdict(feats, *wanted[name])) if x))
                   for name, feats, caption in outputs]
    return outputs


def _write_outputs(outputs, outdir: Path, fbank_cfg: Mapping[str, Any], n_iter: int):
    """Every file of the demo as a wav (Griffin-Lim) and a log-mel picture on one colour scale."""
    from cdsvae.eval.report.plots import plot_logmel

    sr = int(fbank_cfg["sample_rate"])
    files, images = [], {}
    scale = (min(float(f.min()) for _, f, _ in outputs), max(float(f.max()) for _, f, _ in outputs))
    for name, feats, caption in outputs:
        files.append((caption, write_wav(outdir / name, logmel_to_waveform(feats, fbank_cfg, n_iter), sr)))
        images[name] = plot_logmel(feats, outdir / name.replace(".wav", ".png"), scale,
                                   float(fbank_cfg["frame_shift_ms"]) / 1000)
    return files, images


def listening_demo(
    expdir: str | os.PathLike,
    test_set: str,
    outdir: str | os.PathLike,
    feats_dir: str | os.PathLike | None = None,
    max_segments: int = 40,
    n_iter: int = 32,
    judges: "DemoJudges | None" = None,
    device: str = "cpu",
    seed: int = 0,
) -> Demo:
    """Wav files: A and B as fed to the model, their reconstructions, the two swaps (A's z with
    B's s, B's z with A's s), and A's z with a random s and A's s with a random z_1:T (drawn with
    ``seed``); each captioned with the judges' verdict when ``judges`` is given, and drawn as a
    log-mel picture (``<name>.png``).

    Returns the :class:`Demo` (not yet indexed); a demo that cannot be made (one speaker, no fbank
    config) has a note saying why instead of files.
    """
    from cdsvae.data.datadir import read_utt2spk
    from cdsvae.eval.metrics.embeddings import speech_model_settings
    from cdsvae.eval.metrics.factors import Denormaliser
    from cdsvae.experiment.load import load_model

    expdir, outdir = Path(expdir), Path(outdir)
    emb_dir = expdir / f"emb_{test_set}"
    meta_path = emb_dir / "meta.json"
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: not found (run the embedding stage first)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    feats_dir = Path(feats_dir or meta["feats"])
    fbank_path = feats_dir / "fbank.yaml"
    if not fbank_path.is_file():
        return Demo("speech", [], f"No demo: {fbank_path} (the feature options) is missing, so the features cannot "
                    "be inverted.", test_set)
    utt2spk = read_utt2spk(emb_dir / "utt2spk")
    pair = pick_demo_pair(utt2spk)
    if pair is None:
        return Demo("speech", [], f"No demo: the {test_set} set has a single speaker.", test_set)
    fbank_cfg = load_fbank_config(fbank_path)
    model, cfg = load_model(expdir, device)
    _, normalise = speech_model_settings(cfg, expdir)
    segment_frames = int(meta["segment_frames"])
    denorm = Denormaliser(cfg.get("data", {}).get("cmvn"))
    inputs, segs = _segments_of(feats_dir, pair, normalise, segment_frames, max_segments, device)

    def frames(x) -> np.ndarray:
        return denorm(x.reshape(-1, x.shape[-1]).float().cpu().numpy())

    a, b = pair
    outputs = _captioned(inputs, _decodings(model, segs, pair, seed), frames, pair, utt2spk, seed, judges)
    files, images = _write_outputs(outputs, outdir, fbank_cfg, n_iter)
    note = (
        f"Utterance A = {a} (speaker {utt2spk[a]}), B = {b} (speaker {utt2spk[b]}) of the {test_set} set; the first "
        f"{segs[a].shape[0]} segments of {segment_frames} frames. s is averaged over each utterance's segments, "
        "z is kept per frame. Decoded log-mel frames are turned into audio with Griffin-Lim "
        f"({n_iter} iterations), so all files share its artefacts; compare them with the *_input.wav references. "
        "Each picture shows the log-mel frames the audio is made from (time across, mel bins up, one colour "
        "scale for the whole demo): better when a reconstruction looks like its *_input picture and a swap "
        "keeps the timing and formant tracks of the utterance whose words it carries."
    )
    return Demo("speech", files, note, test_set, images)


class DemoJudges:
    """The recipe's speaker and content judges, giving a one-line verdict on a decoded swap; with
    ``content`` false (a corpus without transcripts) the speaker judge's alone."""

    def __init__(self, judge_dir: str | os.PathLike, data_dir: str | os.PathLike, test_set: str,
                 unit_map: str | os.PathLike | None = None, device: str = "cpu", content: bool = True):
        from cdsvae.data.datadir import read_utt2spk
        from cdsvae.eval.metrics.per import read_unit_map
        from cdsvae.eval.judges.speech import (judge_embeddings, load_content_judge_of, load_speaker_judge_of,
                                               read_transcripts)

        judge_dir, data_dir = Path(judge_dir), Path(data_dir)
        self.speaker = load_speaker_judge_of(judge_dir / "speaker", device)
        self.content = load_content_judge_of(judge_dir / "content", device) if content else None
        self.emb = judge_embeddings(judge_dir / "speaker", test_set)
        self.utt2spk = read_utt2spk(data_dir / "utt2spk")
        self.units = read_transcripts(data_dir) if content else {}
        self.unit_map = read_unit_map(unit_map) if unit_map else None

    def verdict(self, log_mel: np.ndarray, voice_utt: str | None, other_utt: str | None,
                words_utt: str | None) -> str:
        """Whose voice the speaker judge hears, ``voice_utt``'s speaker or ``other_utt``'s (the
        centroids of the two speakers' other test utterances), and the content judge's error against
        the transcript of ``words_utt``; a part whose utterance is None is left out."""
        from cdsvae.eval.metrics.disentangle import content_errors
        from cdsvae.eval.metrics.swap import swap_speaker_score

        parts = []
        if voice_utt is not None and other_utt is not None:
            score = swap_speaker_score({(voice_utt, other_utt): self.speaker.embed([log_mel])[0]}, self.emb,
                                       self.utt2spk)
            who = "the wanted voice" if score.closer_to_a == 1.0 else "the other voice"
            parts.append(f"speaker judge: closer to {who} (cosine {score.cos_a:.2f} to speaker "
                         f"{self.utt2spk[voice_utt]}, {score.cos_b:.2f} to {self.utt2spk[other_utt]})")
        if words_utt is not None and words_utt in self.units:
            err = content_errors(self.content, {words_utt: log_mel}, self.units, self.unit_map)
            parts.append(f"content judge: {100 * err.rate:.1f}% unit errors against the transcript of {words_utt}")
        return "; ".join(parts)


def make_speech_demo(
    expdir: str | os.PathLike,
    test_set: str = "test",
    feats_dir: str | os.PathLike | None = None,
    outdir: str | os.PathLike | None = None,
    max_segments: int = 40,
    n_iter: int = 32,
    judges: DemoJudges | None = None,
    device: str = "cpu",
) -> Demo:
    """The listening demo of ``expdir`` in ``outdir`` (default ``<expdir>/demo``), indexed by demo.json."""
    outdir = Path(outdir) if outdir is not None else demo_dir(expdir)
    demo = listening_demo(expdir, test_set, outdir, feats_dir, max_segments, n_iter, judges, device)
    write_demo(outdir, demo)
    return demo
