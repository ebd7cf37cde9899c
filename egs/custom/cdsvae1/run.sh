#!/usr/bin/env bash
# Your own corpus: a folder of audio by speaker (--audio_dir DIR) or a TSV manifest (--manifest FILE),
# speakers held out for test; audio at any rate and with any number of channels; EER of s and z, and
# the judges where there are transcripts.  Stage 1 options (local/data.sh --help) are given here
# directly.  Stages and options: ./run.sh --help (egs/TEMPLATE/cdsvae1/cdsvae.sh).
set -euo pipefail

data_opts=()
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --audio_dir | --manifest | --test_speakers | --test_fraction | --dev_fraction | --split_seed | --min_dur \
            | --bpe_type | --bpe_vocab_size)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            [[ ! "$2" =~ [[:space:]] ]] || { echo "$0: $1 '$2': a value with whitespace cannot be passed on" >&2; exit 2; }
            data_opts+=("$1" "$2")
            shift 2 ;;
        --local_data_opts)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            data_opts+=($2)
            shift 2 ;;
        --help | -h)
            # stage 1's options, given to run.sh directly (its data dir is always data/)
            local/data.sh --help | sed -e 's/^Usage: [^ ]*/Stage 1 (data preparation) of run.sh:/' -e '/--data_dir/d'
            echo
            args+=(--help)
            shift ;;
        *)
            args+=("$1")
            shift ;;
    esac
done

./cdsvae.sh \
    --modality speech \
    --train_set train --dev_set dev --test_sets test \
    --train_configs "conf/train.yaml conf/train_dsvae.yaml" \
    --feats_conf conf/fbank.yaml --vc_conf conf/vc.yaml \
    --local_data_opts "${data_opts[*]}" \
    "${args[@]}"
