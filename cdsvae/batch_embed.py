"""Speaker (s) and content (z_1:T) embeddings of the audio of a whole wav.scp with a packed speech model
(:class:`cdsvae.inference.Disentangler`), in one or several processes: the work of ``cdsvae.bin.embed``."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tqdm import tqdm

from cdsvae.data.feats import FeatureWriter
from cdsvae.eval.metrics.embeddings import write_vectors
from cdsvae.io import UserError


_WORKER: dict = {}


def _init_worker(packed: str, device: str, resample: bool | None, channel, threads: int | None) -> None:
    from cdsvae.inference import Disentangler

    if threads:
        torch.set_num_threads(threads)
    _WORKER["model"] = Disentangler.from_packed(packed, device=device)
    _WORKER["resample"] = resample
    _WORKER["channel"] = channel


def _embed_one(item: tuple[str, str]):
    """(utt, s, z, None) or (utt, None, None, the one-line reason it failed)."""
    utt, spec = item
    try:
        s, z = _WORKER["model"].encode(spec, resample=_WORKER["resample"], name=utt, channel=_WORKER["channel"])
    except UserError as e:
        return utt, None, None, str(e)
    return utt, s, z, None


def _embedded_items(items: list, init: tuple, nj: int):
    """The results of ``_embed_one`` over ``items``, in order, and the pool computing them (None for one job)."""
    import multiprocessing

    if nj == 1:
        _init_worker(*init)
        return map(_embed_one, items), None
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = multiprocessing.get_context(method).Pool(nj, initializer=_init_worker, initargs=init)
    return pool.imap(_embed_one, items), pool


def embed_wav_scp(packed: Path, wav_scp: Path, outdir: Path, nj: int = 1, skip_bad: bool = False,
                  resample: bool | None = None, channel: str | None = None,
                  device: str = "cpu") -> tuple[int, int, list[tuple[str, str]]]:
    """s and z_1:T of every entry of ``wav_scp`` with the packed speech model ``packed``, written in wav.scp
    order to ``outdir`` (``s.ark/s.scp``, ``z.ark/z.scp``, ``bad_utts``) by ``nj`` processes (one torch thread
    each when several). A file that cannot be embedded is an error, or with ``skip_bad`` skipped and listed.
    Returns (utterances embedded, utterances listed, [(skipped utterance, why)])."""
    from cdsvae.audio import check_channel
    from cdsvae.data.datadir import read_scp
    from cdsvae.io import atomic_write_text
    from cdsvae.packed import packed_modality

    channel = None if channel is None else check_channel(channel, "--channel")
    if nj < 1:
        raise UserError(f"--nj must be >= 1, got {nj}")
    modality = packed_modality(packed)
    if modality != "speech":
        raise UserError(f"{packed}: embed takes audio and needs a speech model; this is a {modality} model")
    if not wav_scp.is_file():
        raise UserError(f"{wav_scp}: not found")
    items = list(read_scp(wav_scp).items())
    if not items:
        raise UserError(f"{wav_scp}: no utterances")
    nj = min(nj, len(items))
    results, pool = _embedded_items(items, (str(packed), device, resample, channel, 1 if nj > 1 else None), nj)
    s_vectors, bad = {}, []
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        with FeatureWriter(outdir / "z.ark", outdir / "z.scp") as z_writer, \
                tqdm(total=len(items), desc="embed", unit="utt", delay=2) as bar:
            for utt, s, z, why in results:
                bar.update(1)
                if why is not None:
                    if not skip_bad:
                        raise UserError(f"{why} (--skip_bad true skips such files)")
                    logging.warning("skipping %s: %s", utt, why)
                    bad.append((utt, why))
                    continue
                s_vectors[utt] = s
                z_writer.write(utt, z)
            if not s_vectors:
                raise UserError(f"{wav_scp}: no utterance could be embedded ({bad[0][1]})")
    finally:
        if pool is not None:
            pool.terminate()
    write_vectors(outdir, "s", s_vectors)
    atomic_write_text(outdir / "bad_utts", "".join(f"{u} {why}\n" for u, why in bad))
    return len(s_vectors), len(items), bad
