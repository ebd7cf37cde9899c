#!/usr/bin/env bash
# Stage 1 of the SM-MNIST recipe: data/train and data/test in the cdsvae video layout.
#   local/data.sh [--outdir data] [--train_size 10000] [--test_size 2000] [--num_digits 2] [--seed 0]
# Digits come from MNIST in db.sh (the directory of the IDX files); empty means scikit-learn's
# bundled 8x8 digits upscaled to 28x28. --mnist DIR overrides db.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MNIST=${MNIST:-}
if [ -f ./db.sh ]; then . ./db.sh; fi
if [ -f ./path.sh ]; then . ./path.sh; fi
exec "${PYTHON:-python3}" "${here}/make_smmnist.py" --mnist "${MNIST}" "$@"
