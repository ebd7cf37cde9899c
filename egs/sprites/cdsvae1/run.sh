#!/usr/bin/env bash
# Sprites (the authors' data.pkl, the generator's npy files, or a procedural look-alike); judge metrics.
# Stages and options: ./run.sh --help (egs/TEMPLATE/cdsvae1/cdsvae.sh). Data root: db.sh.
set -euo pipefail

./cdsvae.sh \
    --modality video \
    --train_set train --test_sets test \
    --train_configs "conf/train.yaml conf/train_dsvae.yaml" \
    "$@"
