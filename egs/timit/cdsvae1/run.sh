#!/usr/bin/env bash
# TIMIT: 462 training speakers, the 50-speaker dev set and the 24-speaker core test set; EER of s and z.
# Stages and options: ./run.sh --help (egs/TEMPLATE/cdsvae1/cdsvae.sh). Corpus root: db.sh.
set -euo pipefail

./cdsvae.sh \
    --modality speech \
    --train_set train --dev_set dev --test_sets test \
    --train_configs "conf/train.yaml conf/train_dsvae.yaml" \
    --feats_conf conf/fbank.yaml --vc_conf conf/vc.yaml \
    --judge_conf conf/judges.yaml --unit_map local/phones.61-39.map \
    "$@"
