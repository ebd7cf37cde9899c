#!/usr/bin/env bash
# Check a Kaldi data dir; exit 0 when valid, else exit 1 with one line per problem.
#   utils/validate_data_dir.sh [--no-check-audio | --allow-missing-audio] <data-dir>
# A thin wrapper around `python -m cdsvae.bin.validate_data_dir` (run after path.sh).
set -euo pipefail
exec python -m cdsvae.bin.validate_data_dir "$@"
