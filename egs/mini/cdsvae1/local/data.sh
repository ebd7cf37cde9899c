#!/usr/bin/env bash
# Stage 1 for the embedded mini corpus: synthesise a TIMIT-shaped corpus with espeak-ng
# (local/make_corpus.py; a no-op when the corpus dir already holds the same corpus), then run
# the TIMIT data preparation of ../../timit/cdsvae1/local unchanged on it -> data/{train,dev,test}.
# The corpus has no .PHN files; its untimed .PHONES (espeak-ng phonemes of each sentence) give
# data/<set>/units, the targets of the content judge.
set -euo pipefail

help_message="Usage: $0 [options]
Options:
  --corpus_dir DIR     where the corpus is written (default: \$MINI_CORPUS from db.sh, else corpus)
  --data_dir DIR       output directory (default: data)
  --num_train_speakers N  training speakers (default: 24)
  --num_dev_speakers N    dev speakers, from the TIMIT dev list (default: 8)
  --num_test_speakers N   test speakers, from the TIMIT core-test list, at most 24 (default: 16)
  --num_sx N           shared-pool sentences per training or dev speaker (default: 5)
  --num_si N           speaker-unique sentences per training or dev speaker (default: 3)
  --test_num_sx N      shared-pool sentences per test speaker (default: 10)
  --test_num_si N      speaker-unique sentences per test speaker (default: 10)
  --num_sa N           SA sentences per speaker, 0-2 (default: 2; excluded by the prep unless --include_sa true)
  --include_sa BOOL    keep the SA sentences in the data dirs (default: false)
  --train_subsets N,.. also write data/train_spk<N>: N training speakers drawn with --seed, for
                       few-speaker experiments (./run.sh --train_set train_spk<N>), e.g. 8,12 (default: none)
  --seed N             corpus seed (default: 0)
  --nj N               parallel synthesis processes (default: 2)
  --help               print this message"

corpus_dir=
data_dir=data
num_train_speakers=24
num_dev_speakers=8
num_test_speakers=16
num_sx=5
num_si=3
test_num_sx=10
test_num_si=10
num_sa=2
include_sa=false
train_subsets=
seed=0
nj=2

# Kaldi-style options (utils/parse_options.sh) and log (utils/log.sh), found from this script's
# own location so that it also runs outside a recipe directory.
. "$(dirname "${BASH_SOURCE[0]}")/../../../../utils/log.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../../../utils/parse_options.sh"
if [ $# -gt 0 ]; then
    echo "$0: unexpected argument $1" >&2
    echo "${help_message}" >&2
    exit 2
fi

[ -f ./path.sh ] && . ./path.sh
if [ -z "${corpus_dir}" ]; then
    [ -f ./db.sh ] && . ./db.sh
    corpus_dir=${MINI_CORPUS:-corpus}
fi

local_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timit_local=$(cd "${local_dir}/../../../timit/cdsvae1/local" && pwd)

log "Synthesising the mini corpus (${num_train_speakers}/${num_dev_speakers}/${num_test_speakers} train/dev/test speakers, seed ${seed}) -> ${corpus_dir}"
python "${local_dir}/make_corpus.py" \
    --num_train_speakers "${num_train_speakers}" --num_dev_speakers "${num_dev_speakers}" \
    --num_test_speakers "${num_test_speakers}" --num_sx "${num_sx}" --num_si "${num_si}" \
    --test_num_sx "${test_num_sx}" --test_num_si "${test_num_si}" --num_sa "${num_sa}" \
    --seed "${seed}" --nj "${nj}" "${corpus_dir}"

"${timit_local}/data.sh" --timit_root "${corpus_dir}" --data_dir "${data_dir}" --include_sa "${include_sa}"
for n in ${train_subsets//,/ }; do
    [[ "${n}" =~ ^[0-9]+$ ]] || { echo "$0: --train_subsets expects speaker counts, got '${n}'" >&2; exit 2; }
    python -m cdsvae.bin.subset_data_dir --num_spk "${n}" --seed "${seed}" "${data_dir}/train" "${data_dir}/train_spk${n}"
done
log "Successfully finished: ${data_dir}/{train,dev,test}${train_subsets:+, and train_spk<N> for N in: ${train_subsets}}"
