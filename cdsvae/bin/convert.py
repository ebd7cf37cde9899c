"""Voice conversion with a packed speech model: the words of one recording in the voice of another.

    python -m cdsvae.bin.convert exp/cdsvae/packed --content a.wav --speaker b.wav --out c.wav

z_1:T of --content decoded with s of --speaker (:meth:`cdsvae.inference.Disentangler.swap`), turned
into audio with Griffin-Lim, or with a speechbrain HiFi-GAN directory given by --vocoder. Audio at
another rate than the model's features is resampled when the model was trained so (its fbank.yaml
has ``resample: true``, as a recipe over 48 kHz audio does), and is otherwise an error; --resample
true or false decides instead. Several channels are mixed down (their mean) unless the model's
fbank.yaml names one (``channel``); --channel mix|N decides instead. The output covers the whole segments of --content (the tail shorter
than a segment is dropped).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from cdsvae.bin import add_audio_options, run_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cdsvae.bin.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("packed", type=Path, help="packed model dir or .tar.gz (cdsvae.bin.pack)")
    parser.add_argument("--content", required=True, help="audio whose words (z_1:T) are kept")
    parser.add_argument("--speaker", required=True, help="audio whose voice (s) is used")
    parser.add_argument("--out", type=Path, required=True, help="output wav (16-bit PCM)")
    add_audio_options(parser)
    parser.add_argument("--vocoder", type=Path, default=None, help="speechbrain HiFi-GAN dir (default: Griffin-Lim)")
    parser.add_argument("--n_iter", type=int, default=32, help="Griffin-Lim iterations")
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from cdsvae.audio import check_channel, write_wav
    from cdsvae.io import UserError
    from cdsvae.packed import packed_modality

    channel = None if args.channel is None else check_channel(args.channel, "--channel")
    modality = packed_modality(args.packed)
    if modality != "speech":
        raise UserError(f"{args.packed}: convert needs a speech model; this is a {modality} model")
    from cdsvae.inference import Disentangler

    model = Disentangler.from_packed(args.packed, device=args.device, vocoder=args.vocoder, n_iter=args.n_iter)
    result = model.swap(content=args.content, speaker=args.speaker, resample=args.resample, channel=channel)
    write_wav(args.out, result.waveform, result.sample_rate)
    print(f"wrote {args.out}: {result.waveform.size / result.sample_rate:.2f} s at {result.sample_rate} Hz "
          f"(words of {args.content}, voice of {args.speaker})")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
