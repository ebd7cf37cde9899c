#!/usr/bin/env bash
# The seven stages shared by every cdsvae recipe.  A recipe's run.sh sets its corpus
# options and calls this script (symlinked into the recipe) from the recipe directory,
# passing "$@" on, so `./run.sh --stage 4 --ngpu 4` works everywhere.  See README.md here.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
SECONDS=0

stage=1                # first stage to run
stop_stage=7           # last stage to run
ngpu=0                 # GPUs per node: 0 = CPU, 1 = one GPU, N > 1 = torchrun DDP with N processes
nj=4                   # parallel jobs for stages 2-3 (through cmd.sh)
train_jobs=1           # CPU (--ngpu 0): experiments of stage 4 trained at the same time
num_nodes=1            # nodes for training (N > 1: torchrun rendezvous at MASTER_ADDR:MASTER_PORT)
modality=speech        # speech | video
train_set=             # training set name under data/
dev_set=               # validation set name under data/ (may be empty)
test_sets=             # evaluation set names under data/, space separated
train_configs="conf/train.yaml conf/train_dsvae.yaml"  # one experiment per config
train_args=            # extra arguments for every training run, e.g. "--train.epochs 1"
judge_args=            # video: extra arguments for cdsvae.bin.train_judge, e.g. "--epochs 20"
judge_eval_args=       # video: extra arguments for cdsvae.bin.judge_eval, e.g. "--n_draws 10"
feats_conf=conf/fbank.yaml
vc_conf=conf/vc.yaml
local_data_opts=       # arguments for local/data.sh
skip_bad=false         # skip and count unreadable/too-short utterances instead of stopping
expdir=exp
dumpdir=dump
tag_suffix=            # appended to every experiment tag
seeds=                 # training seeds, e.g. "1 2 3": one experiment per config and seed (<tag>_seed<N>)
norm_max_utts=2000     # speech: training utterances embedded for the mean of mean-normalised scoring

help_message=$(cat <<EOF
Usage: $0 --train_set <name> --test_sets "<names>" [options]

Stages (the numbers are the same in every recipe):
  1  data preparation: local/data.sh -> data/<set>/ (speech: Kaldi data dirs, validated)
  2  features: data/<set> -> ${dumpdir}/<set>/ (log-mel ark/scp, utt2num_frames, CMVN); video: skipped
  3  motion augmentation: WORLD voice conversion of <train_set> -> ${dumpdir}/<train_set>_vc/; video: skipped (on the fly)
  4  training: ${dumpdir}/ -> ${expdir}/<tag>/ for each of --train_configs (conf/train.yaml -> cdsvae, conf/train_X.yaml -> X)
     and each of --seeds (<tag>_seed<N>)
  5  extraction: speech: s and z embeddings of the test sets and of (up to --norm_max_utts utterances of)
     <train_set> -> ${expdir}/<tag>/emb_<set>/; video: judge classifier -> ${expdir}/judge/
  6  scoring: speech: trials, cosine scores (raw and after subtracting the mean of <train_set>),
     EER/minDCF -> ${expdir}/<tag>/score_<set>/; video: judge metrics
  7  report: ${expdir}/<tag>/RESULTS.md, plots, and ${expdir}/RESULTS.md comparing the experiments

Options:
  --stage N             first stage to run (default: ${stage})
  --stop_stage N        last stage to run (default: ${stop_stage})
  --ngpu N              GPUs per node; 0 = CPU, N > 1 = torchrun with N processes (default: ${ngpu})
  --nj N                parallel jobs for stages 2-3 (default: ${nj})
  --train_jobs N        with --ngpu 0: train up to N experiments at the same time, each with
                        OMP_NUM_THREADS threads (default: ${train_jobs})
  --num_nodes N         nodes for training; > 1 needs MASTER_ADDR (and MASTER_PORT) set and this
                        command run on every node (default: ${num_nodes})
  --modality M          speech or video (default: ${modality})
  --train_set NAME      training set under data/ (default: ${train_set:-none})
  --dev_set NAME        validation set under data/ (default: ${dev_set:-none})
  --test_sets "NAMES"   evaluation sets under data/ (default: ${test_sets:-none})
  --train_configs "F.." training configs, one experiment each (default: "${train_configs}")
  --train_args "ARGS"   extra arguments for the trainer (default: "${train_args}")
  --judge_args "ARGS"   video: extra arguments for the judge training (default: "${judge_args}")
  --judge_eval_args "A" video: extra arguments for the judge metrics (default: "${judge_eval_args}")
  --feats_conf FILE     feature config (default: ${feats_conf})
  --vc_conf FILE        voice-conversion config (default: ${vc_conf})
  --local_data_opts "A" arguments for local/data.sh (default: "${local_data_opts}")
  --skip_bad BOOL       skip and count bad utterances instead of stopping (default: ${skip_bad})
  --expdir DIR          experiments (default: ${expdir})
  --dumpdir DIR         features (default: ${dumpdir})
  --tag_suffix S        appended to every experiment tag (default: "${tag_suffix}")
  --seeds "N.."         train each config once per seed, as <tag>_seed<N> with --train.seed N; the
                        report gives mean +- std over seeds (default: "${seeds}": the configs' own seed)
  --norm_max_utts N     speech: training utterances embedded for mean-normalised scoring (default: ${norm_max_utts})
  --config FILE         read defaults for these options from FILE (shell assignments)
  --help                print this message
EOF
)

log "$0${*:+$(printf ' %q' "$@")}"
if [ ! -f utils/parse_options.sh ]; then
    log "Error: ${PWD}/utils/parse_options.sh not found: run this script from a recipe directory (see egs/TEMPLATE/cdsvae1/README.md)"
    exit 1
fi
. utils/parse_options.sh

# Error messages carry the file:line of the caller, like log().
usage_error() {
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}:${FUNCNAME[1]}) Error: $*" >&2
    echo "See '$0 --help'." >&2
    exit 2
}

die() {
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}:${FUNCNAME[1]}) Error: $*" >&2
    exit 1
}

for opt in stage stop_stage ngpu nj num_nodes norm_max_utts train_jobs; do
    [[ "${!opt}" =~ ^[0-9]+$ ]] || usage_error "--${opt} expects a non-negative integer, got '${!opt}'"
done
if [ "${stage}" -lt 1 ] || [ "${stage}" -gt 7 ] || [ "${stop_stage}" -lt 1 ] || [ "${stop_stage}" -gt 7 ]; then
    usage_error "--stage and --stop_stage must be within 1..7 (got --stage ${stage} --stop_stage ${stop_stage})"
fi
[ "${stage}" -le "${stop_stage}" ] || usage_error "--stage ${stage} is after --stop_stage ${stop_stage}"
[ "${nj}" -ge 1 ] || usage_error "--nj must be at least 1"
[ "${train_jobs}" -ge 1 ] || usage_error "--train_jobs must be at least 1"
[ "${num_nodes}" -ge 1 ] || usage_error "--num_nodes must be at least 1"
[ "${num_nodes}" -eq 1 ] || [ "${ngpu}" -ge 1 ] || usage_error "--num_nodes ${num_nodes} needs --ngpu >= 1 (GPUs per node)"
case "${modality}" in speech | video) ;; *) usage_error "--modality must be speech or video, got '${modality}'" ;; esac
[ -n "${train_set}" ] || usage_error "--train_set is required"
[ -n "${test_sets}" ] || usage_error "--test_sets is required"
for seed in ${seeds}; do
    [[ "${seed}" =~ ^[0-9]+$ ]] || usage_error "--seeds expects non-negative integers, got '${seed}'"
done
[ "${norm_max_utts}" -ge 1 ] || usage_error "--norm_max_utts must be at least 1"

for f in path.sh cmd.sh; do
    [ -e "${f}" ] || die "${PWD}/${f} not found: run this script from a recipe directory (see egs/TEMPLATE/cdsvae1/README.md)"
done
. ./path.sh
. ./cmd.sh

# --ngpu 0 means CPU for every tool, whatever GPUs the machine has.
if [ "${ngpu}" -eq 0 ]; then
    export CUDA_VISIBLE_DEVICES=""
fi

current_stage=0

# Stops the current stage when a `python -m` tool it needs is not installed.
require_tool() {
    local module
    for module in "$@"; do
        if ! python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)' \
            "${module}" 2>/dev/null; then
            die "Stage ${current_stage} needs the tool ${module} (python -m ${module}), which is missing from this installation"
        fi
    done
}

# conf/train.yaml -> cdsvae, conf/train_dsvae.yaml -> dsvae, conf/foo.yaml -> foo.
experiment_tag() {
    local name
    name=$(basename "$1" .yaml)
    case "${name}" in
        train) name=cdsvae ;;
        train_*) name=${name#train_} ;;
    esac
    echo "${name}${tag_suffix}"
}

# One line "<config> <tag> <seed>" per experiment: every config once per --seeds entry
# (tag <tag>_seed<N>), or once with the config's own seed ("-") when --seeds is empty.
experiments() {
    local config tag seed
    for config in ${train_configs}; do
        tag=$(experiment_tag "${config}")
        if [ -z "${seeds}" ]; then
            echo "${config} ${tag} -"
        else
            for seed in ${seeds}; do
                echo "${config} ${tag}_seed${seed} ${seed}"
            done
        fi
    done
}

experiment_tags() {
    experiments | cut -d' ' -f2
}

data_sets() {
    echo "${train_set}" ${dev_set} ${test_sets}
}

# Fingerprint of a stage's inputs: the contents of the given files (missing ones count as
# missing) and the given option words. A stage skips a set whose <out>/.done holds the same
# fingerprint, so a re-run redoes work only when its inputs or options changed.
fingerprint() {
    local f
    {
        for f in "$@"; do
            if [ -f "${f}" ]; then echo "file ${f}"; sha256sum <"${f}"; else echo "word ${f}"; fi
        done
    } | sha256sum | cut -d' ' -f1
}

is_done() {  # is_done <out dir> <fingerprint>
    [ -f "$1/.done" ] && [ "$(cat "$1/.done")" = "$2" ]
}

mark_done() {  # mark_done <out dir> <fingerprint>
    echo "$2" >"$1/.done.tmp" && mv "$1/.done.tmp" "$1/.done"
}

# Splits data/<set> by speaker for the job array; prints the number of jobs (at most --nj).
split_for_jobs() {
    local data=$1 num_spk n
    num_spk=$(wc -l <"${data}/spk2utt")
    n=$((nj < num_spk ? nj : num_spk))
    utils/split_data.sh "${data}" "${n}" >&2
    echo "${n}"
}

# The training launcher for --ngpu / --num_nodes, as words of a command.
train_launcher() {
    if [ "${ngpu}" -le 1 ] && [ "${num_nodes}" -eq 1 ]; then
        echo python -m cdsvae.bin.train
        return
    fi
    local torchrun=torchrun nproc=$((ngpu > 1 ? ngpu : 1))
    command -v torchrun >/dev/null 2>&1 || torchrun="python -m torch.distributed.run"
    if [ "${num_nodes}" -eq 1 ]; then
        echo "${torchrun} --standalone --nnodes 1 --nproc_per_node ${nproc} -m cdsvae.bin.train"
    else
        [ -n "${MASTER_ADDR:-}" ] || die "--num_nodes ${num_nodes}: set MASTER_ADDR (and MASTER_PORT) to the rendezvous host, e.g. the first node"
        echo "${torchrun} --nnodes ${num_nodes} --nproc_per_node ${nproc} --rdzv_backend c10d" \
            "--rdzv_endpoint ${MASTER_ADDR}:${MASTER_PORT:-29500} --rdzv_id ${RDZV_ID:-${SLURM_JOB_ID:-cdsvae}} -m cdsvae.bin.train"
    fi
}

stage_1() {
    log "Stage 1: data preparation: local/data.sh${local_data_opts:+ ${local_data_opts}} -> data/{$(data_sets | tr ' ' ',')}"
    [ -x local/data.sh ] || die "local/data.sh not found or not executable in ${PWD}"
    # shellcheck disable=SC2086
    local/data.sh ${local_data_opts}
    local dset
    for dset in $(data_sets); do
        [ -d "data/${dset}" ] || die "local/data.sh did not create data/${dset}"
        if [ "${modality}" = speech ]; then
            utils/validate_data_dir.sh "data/${dset}" || die "data/${dset} is not a valid data dir (problems listed above)"
        fi
    done
}

stage_2() {
    if [ "${modality}" = video ]; then
        log "Skip stage 2: video frames are the model input, there are no features to extract"
        return
    fi
    log "Stage 2: features: data/{$(data_sets | tr ' ' ',')} -> ${dumpdir}/<set>/ (${feats_conf}; CMVN stats of ${train_set})"
    require_tool cdsvae.bin.make_fbank cdsvae.bin.compute_cmvn_stats
    [ -f "${feats_conf}" ] || die "feature config ${feats_conf} not found"
    local dset n out fp
    for dset in $(data_sets); do
        out=${dumpdir}/${dset}
        fp=$(fingerprint "data/${dset}/wav.scp" "data/${dset}/utt2spk" "data/${dset}/segments" \
            "${feats_conf}" "skip_bad=${skip_bad}")
        if is_done "${out}" "${fp}" && { [ "${dset}" != "${train_set}" ] || [ -f "${out}/cmvn.npz" ]; }; then
            log "Features of ${dset} are up to date (same data and options): ${out}"
            continue
        fi
        rm -f "${out}/.done"
        n=$(split_for_jobs "data/${dset}")
        ${cpu_cmd} JOB=1:"${n}" "${out}/log/make_fbank.JOB.log" \
            python -m cdsvae.bin.make_fbank --config "${feats_conf}" --skip_bad "${skip_bad}" --job JOB \
            "data/${dset}/split${n}/JOB" "${out}"
        python -m cdsvae.bin.make_fbank --merge --nj "${n}" "data/${dset}" "${out}"
        utils/validate_data_dir.sh --no-check-audio "${out}" || die "${out} is not a valid data dir (problems listed above)"
        if [ "${dset}" = "${train_set}" ]; then
            python -m cdsvae.bin.compute_cmvn_stats "${out}/feats.scp" "${out}/cmvn.npz"
        fi
        mark_done "${out}" "${fp}"
    done
}

stage_3() {
    if [ "${modality}" = video ]; then
        log "Skip stage 3: video motion views are made on the fly by the data loader"
        return
    fi
    local src=${dumpdir}/${train_set} out=${dumpdir}/${train_set}_vc n
    log "Stage 3: motion augmentation: ${src} -> ${out}/copy*/ (WORLD voice conversion; ${vc_conf})"
    require_tool cdsvae.bin.world_vc
    [ -f "${src}/feats.scp" ] || die "${src}/feats.scp not found: run stage 2 first"
    [ -f "${vc_conf}" ] || die "voice-conversion config ${vc_conf} not found"
    local fp
    fp=$(fingerprint "${src}/feats.scp" "${src}/fbank.yaml" "${vc_conf}" "skip_bad=${skip_bad}")
    if is_done "${out}" "${fp}"; then
        log "Voice-converted features are up to date (same features and options): ${out}"
        return
    fi
    rm -f "${out}/.done"
    n=$(split_for_jobs "${src}")
    ${cpu_cmd} JOB=1:"${n}" "${out}/log/world_vc.JOB.log" \
        python -m cdsvae.bin.world_vc --vc_config "${vc_conf}" --fbank_config "${src}/fbank.yaml" \
        --skip_bad "${skip_bad}" --job JOB "${src}/split${n}/JOB" "${out}"
    python -m cdsvae.bin.world_vc --vc_config "${vc_conf}" --merge --nj "${n}" "${src}" "${out}"
    mark_done "${out}" "${fp}"
}

# Speech: the data paths of this run's sets, so a config never trains on another set than
# --train_set/--dev_set say (the configs' own paths are overridden; --train_args come after).
data_args() {
    [ "${modality}" = speech ] || return 0
    local train=${dumpdir}/${train_set}
    echo "--data.train_split train --data.train_feats ${train} --data.cmvn ${train}/cmvn.npz" \
        "--data.motion_feats ${train}_vc"
    if [ -n "${dev_set}" ]; then
        echo "--data.valid_split dev --data.dev_feats ${dumpdir}/${dev_set}"
    else
        echo "--data.valid_split null"
    fi
}

stage_4() {
    log "Stage 4: training: ${dumpdir}/ -> ${expdir}/{$(experiment_tags | paste -sd,)} (ngpu=${ngpu}, num_nodes=${num_nodes})"
    require_tool cdsvae.bin.train
    local launcher config tag seed cmd logfile seed_args data parallel=1 running=() rc
    launcher=$(train_launcher)
    data=$(data_args | paste -sd' ')
    # Several CPU trainings at once (--train_jobs): each is its own process, so results do not change.
    if [ "${ngpu}" -eq 0 ] && [ "${num_nodes}" -eq 1 ]; then
        parallel=${train_jobs}
    fi
    while read -r config tag seed; do
        [ -f "${config}" ] || die "training config ${config} not found"
        seed_args=""
        [ "${seed}" = - ] || seed_args="--train.seed ${seed}"
        cmd=${gpu_cmd}
        logfile=${expdir}/${tag}/log/launch.log
        if [ "${num_nodes}" -gt 1 ]; then
            # Every node of a multi-node run is already allocated: run there, one log per node.
            cmd=utils/run_local.sh
            logfile=${expdir}/${tag}/log/launch.$(hostname).log
        fi
        log "Training ${tag}: ${launcher} --config ${config} --outdir ${expdir}/${tag} ${data} ${seed_args} ${train_args} (log: ${logfile})"
        # shellcheck disable=SC2086
        set -- ${cmd} --gpu "${ngpu}" "${logfile}" \
            ${launcher} --config "${config}" --outdir "${expdir}/${tag}" ${data} ${seed_args} ${train_args}
        if [ "${parallel}" -le 1 ]; then
            "$@" </dev/null
            continue
        fi
        while [ "$(jobs -rp | wc -l)" -ge "${parallel}" ]; do
            wait -n || true  # exit codes are collected from the .rc files below
        done
        mkdir -p "${expdir}/${tag}/log"
        rm -f "${expdir}/${tag}/log/launch.rc"
        (
            if "$@" </dev/null; then rc=0; else rc=$?; fi
            echo "${rc}" >"${expdir}/${tag}/log/launch.rc"
        ) &
        running+=("${tag}")
    done < <(experiments)
    [ "${#running[@]}" -gt 0 ] || return 0
    wait
    local failed=()
    for tag in "${running[@]}"; do
        rc=$(cat "${expdir}/${tag}/log/launch.rc" 2>/dev/null || echo missing)
        [ "${rc}" = 0 ] || failed+=("${tag} (exit ${rc}, log: ${expdir}/${tag}/log/launch.log)")
    done
    [ "${#failed[@]}" -eq 0 ] || die "training failed: ${failed[*]}"
}

stage_5() {
    local tag dset
    if [ "${modality}" = video ]; then
        log "Stage 5: judge classifier: data/${train_set}, data/${test_sets%% *} -> ${expdir}/judge/"
        require_tool cdsvae.bin.train_judge
        ${gpu_cmd} --gpu "$((ngpu > 0 ? 1 : 0))" "${expdir}/judge/train_judge.log" \
            python -m cdsvae.bin.train_judge --train "data/${train_set}" --test "data/${test_sets%% *}" \
            --outdir "${expdir}/judge" ${judge_args}
        return
    fi
    log "Stage 5: extraction: ${dumpdir}/{${test_sets// /,},${train_set}} -> ${expdir}/<tag>/emb_<set>/ (s and z embeddings; at most ${norm_max_utts} utterances of ${train_set}, for the mean of mean-normalised scoring)"
    require_tool cdsvae.bin.extract_embeddings
    local subset
    for tag in $(experiment_tags); do
        for dset in ${test_sets} ${train_set}; do
            subset=""
            [ "${dset}" != "${train_set}" ] || subset="--max_utts ${norm_max_utts}"
            # shellcheck disable=SC2086
            ${gpu_cmd} --gpu "$((ngpu > 0 ? 1 : 0))" "${expdir}/${tag}/emb_${dset}/extract.log" \
                python -m cdsvae.bin.extract_embeddings --expdir "${expdir}/${tag}" --feats "${dumpdir}/${dset}" \
                --outdir "${expdir}/${tag}/emb_${dset}" --skip_bad "${skip_bad}" ${subset} \
                --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)"
        done
    done
}

stage_6() {
    local tag dset
    if [ "${modality}" = video ]; then
        log "Stage 6: judge metrics: ${expdir}/<tag>/ + ${expdir}/judge/ -> ${expdir}/<tag>/judge_results.json"
        require_tool cdsvae.bin.judge_eval
        for tag in $(experiment_tags); do
            ${gpu_cmd} --gpu "$((ngpu > 0 ? 1 : 0))" "${expdir}/${tag}/judge_eval.log" \
                python -m cdsvae.bin.judge_eval --exp_dir "${expdir}/${tag}" --judge_dir "${expdir}/judge" \
                --data "data/${test_sets%% *}" ${judge_eval_args}
        done
        return
    fi
    log "Stage 6: scoring: ${expdir}/<tag>/emb_<set>/ -> ${expdir}/<tag>/score_<set>/ (trials, cosine scores raw and mean-normalised with emb_${train_set}, EER/minDCF)"
    require_tool cdsvae.bin.score
    for tag in $(experiment_tags); do
        [ -f "${expdir}/${tag}/emb_${train_set}/s.scp" ] || die "${expdir}/${tag}/emb_${train_set}/s.scp not found: run stage 5 first"
        for dset in ${test_sets}; do
            ${cpu_cmd} "${expdir}/${tag}/score_${dset}/score.log" \
                python -m cdsvae.bin.score --emb_dir "${expdir}/${tag}/emb_${dset}" \
                --utt2spk "data/${dset}/utt2spk" --outdir "${expdir}/${tag}/score_${dset}" \
                --mean_from "${expdir}/${tag}/emb_${train_set}"
        done
    done
}

stage_7() {
    local tag exps=() dset out
    for tag in $(experiment_tags); do
        exps+=("${expdir}/${tag}")
    done
    log "Stage 7: report: ${exps[*]} -> <exp>/RESULTS.md and ${expdir}/RESULTS.md"
    if [ "${modality}" = video ]; then
        require_tool cdsvae.bin.video_report
        python -m cdsvae.bin.video_report --data "data/${test_sets%% *}" --out "${expdir}/RESULTS.md" "${exps[@]}"
    else
        require_tool cdsvae.bin.make_report
        for dset in ${test_sets}; do
            out=${expdir}/RESULTS.md
            [ "${dset}" = "${test_sets%% *}" ] || out=${expdir}/RESULTS_${dset}.md
            python -m cdsvae.bin.make_report --expdirs "${exps[@]}" --set "${dset}" --out "${out}"
        done
    fi
    log "Results: ${expdir}/RESULTS.md (a committed RESULTS.md in ${PWD}, if any, is the recipe's reference run)"
}

for ((n = stage; n <= stop_stage; n++)); do
    current_stage=${n}
    "stage_${n}"
done

log "Successfully finished. [elapsed=${SECONDS}s]"
