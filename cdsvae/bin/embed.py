"""Speaker (s) and content (z_1:T) embeddings of audio with a packed speech model.

    python -m cdsvae.bin.embed exp/cdsvae/packed data/my_set/wav.scp out/my_set [--nj 4]

Every wav.scp entry (a path or a ``cmd |`` pipe) goes through the recipe's feature pipeline
(:class:`cdsvae.inference.Disentangler`). Writes, in wav.scp order:

``s.ark``/``s.scp``
    one vector per utterance, as stage 5 computes s;
``z.ark``/``z.scp``
    one matrix per utterance, z_1:T of every frame the model's segments cover;
``bad_utts``
    with --skip_bad true, the skipped utterances and why (unreadable, wrong rate, too short).

Audio at another rate than the model's features is resampled when the model's fbank.yaml has
``resample: true``, and is otherwise an error (skipped with --skip_bad true); --resample true or
false decides instead. Several channels are mixed down (their mean) unless the model's fbank.yaml
names one (``channel``); --channel mix|N decides instead. --nj N embeds with N processes (one model each, one torch thread each).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from cdsvae.bin import add_audio_options, run_main, str2bool

_WORKER: dict = {}


def _init_worker(packed: str, device: str, resample: bool | None, channel, threads: int | None) -> None:
    import torch

    from cdsvae.inference import Disentangler

    if threads:
        torch.set_num_threads(threads)
    _WORKER["model"] = Disentangler.from_packed(packed, device=device)
    _WORKER["resample"] = resample
    _WORKER["channel"] = channel


def _embed_one(item: tuple[str, str]):
    """(utt, s, z, None) or (utt, None, None, the one-line reason it failed)."""
    from cdsvae.errors import UserError

    utt, spec = item
    try:
        s, z = _WORKER["model"].encode(spec, resample=_WORKER["resample"], name=utt, channel=_WORKER["channel"])
    except UserError as e:
        return utt, None, None, str(e)
    return utt, s, z, None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdsvae.bin.embed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("packed", type=Path, help="packed model dir or .tar.gz (cdsvae.bin.pack)")
    parser.add_argument("wav_scp", type=Path, help="Kaldi wav.scp: <utt> <path or command |>")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--nj", type=int, default=1, help="parallel processes")
    parser.add_argument("--skip_bad", type=str2bool, default=False,
                        help="skip (and count, in OUTDIR/bad_utts) files that cannot be embedded")
    add_audio_options(parser)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    import multiprocessing

    from tqdm import tqdm

    from cdsvae.data.datadir import read_scp
    from cdsvae.data.feats import FeatureWriter
    from cdsvae.errors import UserError
    from cdsvae.eval.metrics.embeddings import write_vectors
    from cdsvae.io import atomic_write_text
    from cdsvae.audio import check_channel
    from cdsvae.packed import packed_modality

    channel = None if args.channel is None else check_channel(args.channel, "--channel")
    if args.nj < 1:
        raise UserError(f"--nj must be >= 1, got {args.nj}")
    modality = packed_modality(args.packed)
    if modality != "speech":
        raise UserError(f"{args.packed}: embed takes audio and needs a speech model; this is a {modality} model")
    if not args.wav_scp.is_file():
        raise UserError(f"{args.wav_scp}: not found")
    items = list(read_scp(args.wav_scp).items())
    if not items:
        raise UserError(f"{args.wav_scp}: no utterances")
    nj = min(args.nj, len(items))
    init = (str(args.packed), args.device, args.resample, channel, 1 if nj > 1 else None)
    if nj == 1:
        _init_worker(*init)
        results = map(_embed_one, items)
        pool = None
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(nj, initializer=_init_worker, initargs=init)
        results = pool.imap(_embed_one, items)
    s_vectors, bad = {}, []
    args.outdir.mkdir(parents=True, exist_ok=True)
    try:
        with FeatureWriter(args.outdir / "z.ark", args.outdir / "z.scp") as z_writer, \
                tqdm(total=len(items), desc="embed", unit="utt", delay=2) as bar:
            for utt, s, z, why in results:
                bar.update(1)
                if why is not None:
                    if not args.skip_bad:
                        raise UserError(f"{why} (--skip_bad true skips such files)")
                    logging.warning("skipping %s: %s", utt, why)
                    bad.append((utt, why))
                    continue
                s_vectors[utt] = s
                z_writer.write(utt, z)
            if not s_vectors:
                raise UserError(f"{args.wav_scp}: no utterance could be embedded ({bad[0][1]})")
    finally:
        if pool is not None:
            pool.terminate()
    write_vectors(args.outdir, "s", s_vectors)
    atomic_write_text(args.outdir / "bad_utts", "".join(f"{u} {why}\n" for u, why in bad))
    print(f"embedded {len(s_vectors)} of {len(items)} utterance(s) -> {args.outdir}/s.scp, z.scp"
          + (f"; skipped {len(bad)} (listed in {args.outdir}/bad_utts)" if bad else ""))
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
