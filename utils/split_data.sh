#!/usr/bin/env bash
# Split a Kaldi data dir into N parts for a JOB=1:N job array (Kaldi's utils/split_data.sh).
#   utils/split_data.sh [--per-utt] <data-dir> <N>
# Writes <data-dir>/split<N>/{1..N} (by speaker: a speaker's utterances stay in one part)
# or, with --per-utt, <data-dir>/split<N>utt/{1..N}.
set -euo pipefail

by=speaker
if [ "${1:-}" = --per-utt ]; then
    by=utterance
    shift
fi
if [ $# -ne 2 ] || ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
    echo "Usage: $0 [--per-utt] <data-dir> <N>" >&2
    exit 2
fi
data=$1
n=$2
python=python
command -v "$python" >/dev/null 2>&1 || python=python3
exec "$python" -c '
import sys
from cdsvae.bin import run_main
from cdsvae.data.datadir import split_data_dir

def main(argv):
    split_data_dir(argv[0], int(argv[1]), by=argv[2])

main.__module__ = "split_data"
run_main(main, sys.argv[1:])
' "$data" "$n" "$by"
