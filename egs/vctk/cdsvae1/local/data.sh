#!/usr/bin/env bash
# Stage 1 for VCTK: the corpus at $VCTK (db.sh), release 0.92 (flac, mic1/mic2) or 0.80 (wav48/),
# -> data/{train,dev,test} over the fixed speaker-disjoint lists conf/{train,dev,test}_spk.list
# (88/8/12 speakers, made by local/make_speaker_lists.py), or over those of --spk_list_dir (for a
# partial corpus, `local/make_speaker_lists.py speaker-info.txt DIR --vctk_root $VCTK` writes them).
# Audio stays at 48 kHz; the feature stage resamples to 16 kHz (resample: true in conf/fbank.yaml).
# Then data/<set>/units: sentencepiece pieces of each transcript (lower-cased, punctuation
# removed but for apostrophes inside words), from a model trained on data/train/text and kept
# in data/token_<bpe_type><bpe_vocab_size>/ (cdsvae.bin.make_units), for the content judge.
set -euo pipefail

help_message="Usage: $0 [options]
Options:
  --vctk_root DIR     VCTK root with txt/ and wav48_silence_trimmed/ or wav48/ (default: \$VCTK from db.sh)
  --data_dir DIR      output directory (default: data)
  --mic NAME          mic1 or mic2, for the 0.92 release (default: mic1)
  --spk_list_dir DIR  folder of {train,dev,test}_spk.list (default: the recipe's conf/, the fixed split)
  --skip_bad BOOL     skip and count unreadable audio instead of stopping (default: false)
  --bpe_type TYPE     sentencepiece model of the units: unigram or bpe (default: unigram)
  --bpe_vocab_size N  number of sentencepiece pieces of the units, trained on data/train/text (default: 300)
  --help              print this message"

vctk_root=
data_dir=data
mic=mic1
spk_list_dir=
skip_bad=false
bpe_type=unigram
bpe_vocab_size=300

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
if [ -z "${vctk_root}" ]; then
    [ -f ./db.sh ] && . ./db.sh
    vctk_root=${VCTK:-}
fi

local_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ -n "${spk_list_dir}" ] || spk_list_dir=$(cd "${local_dir}/../conf" && pwd)

log "Preparing VCTK (${mic}): ${vctk_root:-<unset>} -> ${data_dir}/{train,dev,test}"
python "${local_dir}/vctk_data_prep.py" \
    --spk_list_dir "${spk_list_dir}" \
    --mic "${mic}" \
    --skip_bad "${skip_bad}" \
    "${vctk_root}" "${data_dir}"

log "Units: ${bpe_type} sentencepiece model of ${bpe_vocab_size} pieces on ${data_dir}/train/text -> ${data_dir}/{train,dev,test}/units"
python -m cdsvae.bin.make_units \
    --train_text "${data_dir}/train/text" \
    --model_dir "${data_dir}/token_${bpe_type}${bpe_vocab_size}" \
    --model_type "${bpe_type}" --vocab_size "${bpe_vocab_size}" \
    --lowercase true --strip_punct true \
    "${data_dir}/train" "${data_dir}/dev" "${data_dir}/test"

for x in train dev test; do
    python -m cdsvae.bin.validate_data_dir "${data_dir}/${x}"
done
log "Successfully finished: ${data_dir}/{train,dev,test}"
