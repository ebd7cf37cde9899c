#!/usr/bin/env bash
# Split a Kaldi data dir into N parts for a JOB=1:N job array (Kaldi's utils/split_data.sh).
#   utils/split_data.sh [--per-utt] <data-dir> <N>
# Writes <data-dir>/split<N>/{1..N} (by speaker: a speaker's utterances stay in one part)
# or, with --per-utt, <data-dir>/split<N>utt/{1..N}.
# A thin wrapper around `python -m cdsvae.bin.split_data_dir` (run after path.sh).
set -euo pipefail
exec python -m cdsvae.bin.split_data_dir "$@"
