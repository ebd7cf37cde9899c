#!/usr/bin/env bash
# Stage 1 for your own corpus: a folder of audio by speaker (--audio_dir) or a TSV manifest
# (--manifest) -> data/{train,dev,test} (local/custom_data_prep.py: Kaldi-safe ids, speakers or
# utterances held out for test, a dev share of the training speakers' utterances; unreadable and
# too-short files counted and listed in data/skipped_audio).  Then, when the training set has
# transcripts, data/<set>/units: sentencepiece pieces of each transcript (lower-cased, punctuation
# removed but for apostrophes inside words), from a model trained on data/train/text and kept in
# data/token_<bpe_type><bpe_vocab_size>/ (cdsvae.bin.make_units), for the content judge; without
# transcripts there are no units, and stages 5-6 judge the speaker side alone.
set -euo pipefail

help_message="Usage: $0 (--audio_dir DIR | --manifest FILE) [options]
Options:
  --audio_dir DIR       DIR/<speaker>/**/<name>.<wav|flac|ogg|sph>, with an optional <name>.txt transcript
                        beside each file (default: \$CUSTOM_AUDIO_DIR from db.sh)
  --manifest FILE       tab-separated, with a header: path, speaker and optionally text; relative paths are
                        read from the manifest's folder (default: \$CUSTOM_MANIFEST from db.sh)
  --data_dir DIR        output directory (default: data)
  --test_speakers N     speakers held out for test, drawn with --split_seed; 0: hold out a --test_fraction
                        of each speaker's utterances instead, for a corpus of very few speakers (default: 2)
  --test_fraction F     with --test_speakers 0: each speaker's share of test utterances (default: 0.2)
  --dev_fraction F      each training speaker's share of dev utterances (default: 0.1)
  --split_seed N        seed of the splits (default: 0)
  --min_dur SECONDS     shorter files are skipped and listed in <data_dir>/skipped_audio (default: 0.5)
  --bpe_type TYPE       sentencepiece model of the units: unigram, bpe or char (default: unigram)
  --bpe_vocab_size N    number of sentencepiece pieces, trained on data/train/text; lower it for a corpus of
                        few transcripts (default: 300)
  --help                print this message"

audio_dir=
manifest=
data_dir=data
test_speakers=2
test_fraction=0.2
dev_fraction=0.1
split_seed=0
min_dur=0.5
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
if [ -z "${audio_dir}" ] && [ -z "${manifest}" ]; then
    [ -f ./db.sh ] && . ./db.sh
    audio_dir=${CUSTOM_AUDIO_DIR:-}
    manifest=${CUSTOM_MANIFEST:-}
fi
if [ -n "${audio_dir}" ] && [ -n "${manifest}" ]; then
    echo "$0: give --audio_dir or --manifest, not both (got --audio_dir ${audio_dir} --manifest ${manifest})" >&2
    exit 2
fi
if [ -n "${audio_dir}" ]; then
    source_opt=(--audio_dir "${audio_dir}")
elif [ -n "${manifest}" ]; then
    source_opt=(--manifest "${manifest}")
else
    echo "$0: no corpus: give --audio_dir DIR (a folder of audio by speaker) or --manifest FILE (a TSV of" \
        "path, speaker[, text]), or set CUSTOM_AUDIO_DIR or CUSTOM_MANIFEST in db.sh" >&2
    exit 2
fi

local_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log "Preparing ${source_opt[*]} -> ${data_dir}/{train,dev,test} (--test_speakers ${test_speakers}, --dev_fraction ${dev_fraction}, --split_seed ${split_seed})"
python "${local_dir}/custom_data_prep.py" "${source_opt[@]}" \
    --test_speakers "${test_speakers}" --test_fraction "${test_fraction}" --dev_fraction "${dev_fraction}" \
    --split_seed "${split_seed}" --min_dur "${min_dur}" "${data_dir}"

if [ -f "${data_dir}/train/text" ]; then
    with_text=()
    for x in train dev test; do
        [ ! -f "${data_dir}/${x}/text" ] || with_text+=("${data_dir}/${x}")
    done
    log "Units: ${bpe_type} sentencepiece model of ${bpe_vocab_size} pieces on ${data_dir}/train/text -> units of ${with_text[*]}"
    python -m cdsvae.bin.make_units \
        --train_text "${data_dir}/train/text" \
        --model_dir "${data_dir}/token_${bpe_type}${bpe_vocab_size}" \
        --model_type "${bpe_type}" --vocab_size "${bpe_vocab_size}" \
        --lowercase true --strip_punct true \
        "${with_text[@]}"
else
    rm -f "${data_dir}"/{train,dev,test}/units
    log "No transcripts in ${data_dir}/train: no content units; stages 5-6 judge the speaker side alone"
fi

for x in train dev test; do
    python -m cdsvae.bin.validate_data_dir "${data_dir}/${x}"
done
log "Successfully finished: ${data_dir}/{train,dev,test}"
