#!/usr/bin/env bash
# The embedded default: a TIMIT-shaped corpus synthesised here with espeak-ng (local/make_corpus.py), then the TIMIT stages unchanged, with settings sized for a laptop CPU.
# Stages and options: ./run.sh --help (egs/TEMPLATE/cdsvae1/cdsvae.sh). Corpus root: db.sh.
set -euo pipefail

./cdsvae.sh \
    --modality speech \
    --train_set train --dev_set dev --test_sets test \
    --train_configs "conf/train.yaml conf/train_dsvae.yaml" \
    --feats_conf conf/fbank.yaml --vc_conf conf/vc.yaml \
    --train_jobs 2 \
    "$@"
