"""What a trained model sounds or looks like: the demo step, writing ``<exp>/demo/``.

    python -m cdsvae.bin.make_demo --expdir exp/cdsvae --set test [--feats dump/test]   # speech
    python -m cdsvae.bin.make_demo --expdir exp/cdsvae --data data/test                 # video

Speech (needs ``<exp>/emb_<set>/`` from the embedding stage): wav files of utterances A and B
of two speakers as fed to the model, their reconstructions, A's content in B's voice and B's in
A's, inverted with Griffin-Lim; with ``--judge_dir`` each swap's caption gives the verdict of
the recipe's speaker and content judges. Video: ``swap_grid.png``, ``swap_grid_frame0.png`` and
``samples.png``. Either way ``demo.json`` lists the files with captions (or the note saying
why no demo could be made); the reports link them. The modality is the experiment's
``data.type``. Rerunning replaces the demo.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from cdsvae.bin import run_main, str2bool
from cdsvae.io import UserError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cdsvae.bin.make_demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--expdir", type=Path, required=True, help="experiment directory")
    p.add_argument("--outdir", type=Path, default=None, help="where to write (default: <expdir>/demo)")
    p.add_argument("--device", default="cpu", help="where the model and judges run: cpu or cuda (default: %(default)s)")
    speech = p.add_argument_group("speech")
    speech.add_argument("--set", dest="test_set", default="test",
                        help="evaluation set whose utterances are used (emb_<set>; default: %(default)s)")
    speech.add_argument("--feats", type=Path, default=None,
                        help="feature dir of that set (default: the one the embeddings came from)")
    speech.add_argument("--max_segments", type=int, default=40, help="segments per utterance (default: %(default)s)")
    speech.add_argument("--n_iter", type=int, default=32, help="Griffin-Lim iterations (default: %(default)s)")
    speech.add_argument("--judge_dir", type=Path, default=None,
                        help="the recipe's speaker and content judges (exp/judge): each swap gets their verdict; "
                             "needs --data (the set's data dir, for utt2spk and units)")
    speech.add_argument("--content", type=str2bool, default=True,
                        help="with --judge_dir: the content judge's verdict too (false: the corpus has no "
                             "transcripts and no content judge; default: %(default)s)")
    speech.add_argument("--unit_map", type=Path, default=None, help="folding map of the units for the content verdict")
    video = p.add_argument_group("video")
    video.add_argument("--data", type=Path, default=None,
                       help="video: test split dir to take sequences from (required); speech: the set's data dir "
                            "(with --judge_dir)")
    video.add_argument("--num", type=int, default=6, help="sequences in the swap grid (default: %(default)s)")
    video.add_argument("--num_samples", type=int, default=8, help="sequences sampled from the priors "
                                                                  "(default: %(default)s)")
    video.add_argument("--seed", type=int, default=0, help="seed of the samples (default: %(default)s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.expdir.is_dir():
        raise UserError(f"{args.expdir}: experiment directory not found")
    for name in ("max_segments", "n_iter", "num", "num_samples"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")

    from cdsvae.eval.demo.index import DEMO_INDEX, demo_dir
    from cdsvae.eval.report.experiment import load_config, modality

    kind = modality(load_config(args.expdir))
    if kind == "speech":
        from cdsvae.eval.demo.speech import make_speech_demo

        from cdsvae.eval.demo.speech import DemoJudges

        judges = None
        if args.judge_dir is not None:
            if args.data is None:
                raise UserError("--judge_dir needs --data, the data dir of the set (utt2spk, units)")
            judges = DemoJudges(args.judge_dir, args.data, args.test_set, args.unit_map, args.device, args.content)
        demo = make_speech_demo(args.expdir, args.test_set, args.feats, args.outdir, args.max_segments, args.n_iter,
                                judges, args.device)
    elif kind == "video":
        if args.data is None:
            raise UserError(f"{args.expdir} is a video experiment: give --data <test split dir>")
        from cdsvae.eval.demo.video import make_video_demo

        demo = make_video_demo(args.expdir, args.data, args.outdir, args.num, args.num_samples, args.seed,
                               args.device)
    else:
        raise UserError(f"{args.expdir}: no demo for data.type {kind} (only speech and video)")
    outdir = args.outdir if args.outdir is not None else demo_dir(args.expdir)
    if demo.files:
        print(f"make_demo: wrote {len(demo.files)} files and {outdir / DEMO_INDEX}")
    else:
        print(f"make_demo: {demo.note} (recorded in {outdir / DEMO_INDEX})")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
