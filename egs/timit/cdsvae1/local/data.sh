#!/usr/bin/env bash
# Stage 1 for TIMIT: the tree at $TIMIT (db.sh) -> data/{train,dev,test} Kaldi data dirs.
# Reads the LDC's SPHERE .WAV files, copies with a RIFF .WAV.wav beside each (the .WAV is used),
# and copies with RIFF under the .WAV name alike (local/timit_data_prep.py).
# Sets: train = all 462 TRAIN speakers; dev = the 50 speakers of conf/dev_spk.list;
# test = the 24-speaker core test set of conf/test_spk.list (both taken from TEST).
# data/<set>/phones keeps the .PHN alignments as "<utt> <start_s> <end_s> <phone>";
# data/<set>/units the 61 phones of each utterance in order, "<utt> <phone1> <phone2> ..."
# (from .PHN, or from an untimed <UTT>.PHONES where there is no .PHN), for the content judge.
set -euo pipefail

help_message="Usage: $0 [options]
Options:
  --timit_root DIR    TIMIT root with TRAIN/ and TEST/ (default: \$TIMIT from db.sh)
  --data_dir DIR      output directory (default: data)
  --include_sa BOOL   keep the SA sentences (default: false)
  --skip_bad BOOL     skip and count bad utterances instead of stopping (default: false)
  --help              print this message"

timit_root=
data_dir=data
include_sa=false
skip_bad=false

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
if [ -z "${timit_root}" ]; then
    [ -f ./db.sh ] && . ./db.sh
    timit_root=${TIMIT:-}
fi

local_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf_dir=$(cd "${local_dir}/../conf" && pwd)

log "Preparing TIMIT: ${timit_root:-<unset>} -> ${data_dir}/{train,dev,test} (include_sa=${include_sa})"
python "${local_dir}/timit_data_prep.py" \
    --dev_spk_list "${conf_dir}/dev_spk.list" \
    --test_spk_list "${conf_dir}/test_spk.list" \
    --include_sa "${include_sa}" \
    --skip_bad "${skip_bad}" \
    "${timit_root}" "${data_dir}"

for x in train dev test; do
    python -m cdsvae.bin.validate_data_dir "${data_dir}/${x}"
done
log "Successfully finished: ${data_dir}/{train,dev,test}"
