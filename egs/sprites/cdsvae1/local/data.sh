#!/usr/bin/env bash
# Stage 1 of the Sprites recipe: data/train and data/test in the cdsvae video layout.
#   local/data.sh [--outdir data] [--train_size 9000] [--test_size 2664] [--seed 0] [--dtype uint8|float32]
# The source is SPRITES from db.sh (the authors' data.pkl or the generator's npy dir);
# empty means the procedural corpus of local/make_sprites.py. --sprites PATH overrides db.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SPRITES=${SPRITES:-}
if [ -f ./db.sh ]; then . ./db.sh; fi
if [ -f ./path.sh ]; then . ./path.sh; fi
exec "${PYTHON:-python3}" "${here}/prepare_sprites.py" --sprites "${SPRITES}" "$@"
