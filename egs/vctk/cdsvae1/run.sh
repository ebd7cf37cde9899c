#!/usr/bin/env bash
# VCTK 0.92 (or the older wav48 layout), speaker-disjoint splits in conf/*_spk.list, 16 kHz; EER of s and z.
# Stages and options: ./run.sh --help (egs/TEMPLATE/cdsvae1/cdsvae.sh). Corpus root: db.sh.
set -euo pipefail

./cdsvae.sh \
    --modality speech \
    --train_set train --dev_set dev --test_sets test \
    --train_configs "conf/train.yaml conf/train_dsvae.yaml" \
    --feats_conf conf/fbank.yaml --vc_conf conf/vc.yaml \
    "$@"
