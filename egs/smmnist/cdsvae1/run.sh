#!/usr/bin/env bash
# Stochastic moving MNIST (from MNIST IDX files, or scikit-learn's digits); judge metrics.
# Stages and options: ./run.sh --help (egs/TEMPLATE/cdsvae1/cdsvae.sh). Data root: db.sh.
set -euo pipefail

./cdsvae.sh \
    --modality video \
    --train_set train --test_sets test \
    --train_configs "conf/train.yaml conf/train_dsvae.yaml" \
    "$@"
