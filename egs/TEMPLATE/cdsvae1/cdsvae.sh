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
retrain=false          # stage 4: move existing experiments aside (<tag>.old<N>) and train them afresh
progress_secs=30       # stage 4: seconds between progress lines of the running trainings on the console
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
     and each of --seeds (<tag>_seed<N>); the data paths come from --dumpdir, --train_set and --dev_set,
     and an experiment trained on other inputs is refused (see --retrain)
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
  --skip_bad BOOL       skip and count bad utterances in every stage instead of stopping (default: ${skip_bad})
  --retrain BOOL        stage 4: move each existing experiment aside to <tag>.old<N> (never deleted) and
                        train it afresh, e.g. after its features changed (default: ${retrain})
  --progress_secs N     stage 4: seconds between progress lines on the console (default: ${progress_secs})
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

for opt in stage stop_stage ngpu nj num_nodes norm_max_utts train_jobs progress_secs; do
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
[ "${progress_secs}" -ge 1 ] || usage_error "--progress_secs must be at least 1"

for f in path.sh cmd.sh; do
    [ -e "${f}" ] || die "${PWD}/${f} not found: run this script from a recipe directory (see egs/TEMPLATE/cdsvae1/README.md)"
done
. ./path.sh
. ./cmd.sh

# CUDA devices this machine shows: nvidia-smi's list, restricted by CUDA_VISIBLE_DEVICES when set.
visible_gpus() {
    local n=0 listed
    if command -v nvidia-smi >/dev/null 2>&1; then
        n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    fi
    if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
        listed=$(printf '%s\n' "${CUDA_VISIBLE_DEVICES}" | tr ',' '\n' | grep -c '^[^-]' || true)
        [ "${listed}" -ge "${n}" ] || n=${listed}
    fi
    echo "${n}"
}

# --ngpu 0 means CPU for every tool, whatever GPUs the machine has.  --ngpu N asks for N GPUs
# per node: when the GPU stages (4-6) run on this machine (the local backend), it must have them.
if [ "${ngpu}" -eq 0 ]; then
    export CUDA_VISIBLE_DEVICES=""
elif [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 4 ] && [[ "${gpu_cmd}" == utils/run_local.sh* ]]; then
    n_visible=$(visible_gpus)
    if [ "${n_visible}" -lt "${ngpu}" ]; then
        die "--ngpu ${ngpu} asks for ${ngpu} GPU(s), but this machine shows ${n_visible} CUDA device(s)" \
            "(nvidia-smi -L${CUDA_VISIBLE_DEVICES+, CUDA_VISIBLE_DEVICES='${CUDA_VISIBLE_DEVICES}'}); use --ngpu 0 to run on the CPU"
    fi
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

# Counts, on the console, the utterances a stage skipped (--skip_bad true), listed one per line in <list>.
report_skipped() {  # report_skipped <list> <data dir> <why>
    local n total
    [ -s "$1" ] || return 0
    n=$(wc -l <"$1")
    total=$(wc -l <"$2/utt2spk")
    log "Skipped ${n} of ${total} utterance(s) of $2 ($3; --skip_bad true): listed in $1"
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
            # --skip_bad true: a missing audio file is counted here and its utterance skipped in stage 2
            utils/validate_data_dir.sh $([ "${skip_bad}" = true ] && echo --allow-missing-audio) "data/${dset}" \
                || die "data/${dset} is not a valid data dir (problems listed above)"
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
        log "Features of ${dset}: ${n} job(s), logs: ${out}/log/make_fbank.*.log"
        ${cpu_cmd} JOB=1:"${n}" "${out}/log/make_fbank.JOB.log" \
            python -m cdsvae.bin.make_fbank --config "${feats_conf}" --skip_bad "${skip_bad}" --job JOB \
            "data/${dset}/split${n}/JOB" "${out}"
        python -m cdsvae.bin.make_fbank --merge --nj "${n}" "data/${dset}" "${out}"
        report_skipped "${out}/bad_utts" "data/${dset}" "unreadable audio"
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
    log "Voice conversion of ${train_set}: ${n} job(s), logs: ${out}/log/world_vc.*.log"
    ${cpu_cmd} JOB=1:"${n}" "${out}/log/world_vc.JOB.log" \
        python -m cdsvae.bin.world_vc --vc_config "${vc_conf}" --fbank_config "${src}/fbank.yaml" \
        --skip_bad "${skip_bad}" --job JOB "${src}/split${n}/JOB" "${out}"
    python -m cdsvae.bin.world_vc --vc_config "${vc_conf}" --merge --nj "${n}" "${src}" "${out}"
    report_skipped "${out}/copy1/bad_utts" "${src}" "voice conversion failed"
    mark_done "${out}" "${fp}"
}

# The trainer options this script owns: the data paths of this run's sets (a config never
# trains on another set than --dumpdir, --train_set and --dev_set say; --train_args come after),
# --skip_bad, and the device of --ngpu.
train_run_args() {
    if [ "${modality}" = speech ]; then
        local train=${dumpdir}/${train_set}
        echo "--data.train_split train --data.train_feats ${train} --data.cmvn ${train}/cmvn.npz" \
            "--data.motion_feats ${train}_vc --data.skip_bad ${skip_bad}"
        if [ -n "${dev_set}" ]; then
            echo "--data.valid_split dev --data.dev_feats ${dumpdir}/${dev_set}"
        else
            echo "--data.valid_split null"
        fi
    else
        echo "--data.root data --data.train_split ${train_set} --data.valid_split ${dev_set:-null}"
    fi
    echo "--train.device $([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)"
}

# Moves a directory aside, never deleting it: <dir>.old1, <dir>.old2, ...
move_aside() {
    local n=1
    while [ -e "$1.old${n}" ]; do n=$((n + 1)); done
    mv "$1" "$1.old${n}"
    log "Moved $1 aside to $1.old${n} (--retrain true)"
}

# Stage 4's console: one line per running training (its DIR/progress: epoch, step, loss, ETA)
# every --progress_secs seconds.  Returns when a training has ended or the interval is over.
training_tags=()
last_progress=0
wait_for_trainings() {
    local before i tag line
    before=$(jobs -rp | wc -l)
    for ((i = 0; i < progress_secs; i++)); do
        [ "$(jobs -rp | wc -l)" -ge "${before}" ] && [ "${before}" -gt 0 ] || break
        sleep 1
    done
    [ $((SECONDS - last_progress)) -ge "${progress_secs}" ] || return 0
    last_progress=${SECONDS}
    for tag in "${training_tags[@]}"; do
        [ ! -f "${expdir}/${tag}/log/launch.rc" ] || continue
        line=$(cat "${expdir}/${tag}/progress" 2>/dev/null || echo "starting")
        log "  ${tag}: ${line}"
    done
}

stage_4() {
    local where=CPU
    [ "${ngpu}" -eq 0 ] || where="${ngpu} GPU(s) per node x ${num_nodes} node(s)"
    log "Stage 4: training on ${where}: ${dumpdir}/ -> ${expdir}/{$(experiment_tags | paste -sd,)}"
    require_tool cdsvae.bin.train
    local launcher config tag seed cmd logfile seed_args args parallel=1 rc msg
    launcher=$(train_launcher)
    args=$(train_run_args | paste -sd' ')
    # Every experiment is checked before any starts: one trained on other inputs stops the stage.
    while read -r config tag seed; do
        [ -f "${config}" ] || die "training config ${config} not found"
        seed_args=""
        [ "${seed}" = - ] || seed_args="--train.seed ${seed}"
        if [ "${retrain}" = true ] && [ -e "${expdir}/${tag}" ]; then
            move_aside "${expdir}/${tag}"
        fi
        # shellcheck disable=SC2086
        if ! msg=$(python -m cdsvae.bin.train --config "${config}" --outdir "${expdir}/${tag}" ${args} \
            ${seed_args} ${train_args} --check_inputs 2>&1 </dev/null); then
            die "$(printf '%s\n' "${msg}" | tail -n 1 | sed -e 's/^[a-z_]*: error: //' \
                -e 's/; train into a new --outdir or move .* aside$//'); to go on, rerun with" \
                "--retrain true (moves ${expdir}/${tag} aside) or choose a new --tag_suffix"
        fi
    done < <(experiments)
    # Several CPU trainings at once (--train_jobs): each is its own process, so results do not change.
    if [ "${ngpu}" -eq 0 ] && [ "${num_nodes}" -eq 1 ]; then
        parallel=${train_jobs}
    fi
    training_tags=()
    last_progress=${SECONDS}
    while read -r config tag seed; do
        seed_args=""
        [ "${seed}" = - ] || seed_args="--train.seed ${seed}"
        cmd=${gpu_cmd}
        logfile=${expdir}/${tag}/log/launch.log
        if [ "${num_nodes}" -gt 1 ]; then
            # Every node of a multi-node run is already allocated: run there, one log per node.
            cmd=utils/run_local.sh
            logfile=${expdir}/${tag}/log/launch.$(hostname).log
        fi
        while [ "$(jobs -rp | wc -l)" -ge "${parallel}" ]; do
            wait_for_trainings
        done
        log "Training ${tag}: ${launcher} --config ${config} --outdir ${expdir}/${tag} ${args}${seed_args:+ ${seed_args}}${train_args:+ ${train_args}}"
        log "  logs: ${logfile} and ${expdir}/${tag}/train.log"
        mkdir -p "${expdir}/${tag}/log"
        rm -f "${expdir}/${tag}/log/launch.rc" "${expdir}/${tag}/progress"
        # shellcheck disable=SC2086
        set -- ${cmd} --gpu "${ngpu}" "${logfile}" \
            ${launcher} --config "${config}" --outdir "${expdir}/${tag}" ${args} ${seed_args} ${train_args}
        (
            if "$@" </dev/null; then rc=0; else rc=$?; fi
            echo "${rc}" >"${expdir}/${tag}/log/launch.rc"
        ) &
        training_tags+=("${tag}")
    done < <(experiments)
    while [ "$(jobs -rp | wc -l)" -gt 0 ]; do
        wait_for_trainings
    done
    wait
    local failed=()
    for tag in "${training_tags[@]}"; do
        rc=$(cat "${expdir}/${tag}/log/launch.rc" 2>/dev/null || echo missing)
        if [ "${rc}" = 0 ]; then
            log "Trained ${tag}: $(cat "${expdir}/${tag}/progress" 2>/dev/null || echo "done (no progress recorded)")"
        else
            failed+=("${tag} (exit ${rc}, log: ${expdir}/${tag}/log/launch.log)")
        fi
    done
    [ "${#failed[@]}" -eq 0 ] || die "training failed: ${failed[*]}"
}

# Stops when an experiment's recorded training inputs changed since it was trained, or when the
# given feature dirs were made with other options than its training features.
check_experiments() {  # check_experiments [feature dir...]
    require_tool cdsvae.bin.check_experiment
    local tag dirs=() feats=() msg
    for tag in $(experiment_tags); do
        dirs+=("${expdir}/${tag}")
    done
    [ $# -eq 0 ] || feats=(--feats "$@")
    if ! msg=$(python -m cdsvae.bin.check_experiment "${dirs[@]}" "${feats[@]}" 2>&1 </dev/null); then
        die "$(printf '%s\n' "${msg}" | tail -n 1 | sed 's/^[a-z_]*: error: //'); rerun stage 4 with" \
            "--retrain true (moves the experiment aside) or choose a new --tag_suffix"
    fi
}

stage_5() {
    local tag dset
    if [ "${modality}" = video ]; then
        log "Stage 5: judge classifier: data/${train_set}, data/${test_sets%% *} -> ${expdir}/judge/ (log: ${expdir}/judge/train_judge.log)"
        require_tool cdsvae.bin.train_judge
        check_experiments
        ${gpu_cmd} --gpu "$((ngpu > 0 ? 1 : 0))" "${expdir}/judge/train_judge.log" \
            python -m cdsvae.bin.train_judge --train "data/${train_set}" --test "data/${test_sets%% *}" \
            --outdir "${expdir}/judge" ${judge_args}
        return
    fi
    log "Stage 5: extraction: ${dumpdir}/{${test_sets// /,},${train_set}} -> ${expdir}/<tag>/emb_<set>/ (s and z embeddings; at most ${norm_max_utts} utterances of ${train_set}, for the mean of mean-normalised scoring)"
    require_tool cdsvae.bin.extract_embeddings
    local subset out n_skipped
    check_experiments $(for dset in ${test_sets} ${train_set}; do echo "${dumpdir}/${dset}"; done)
    for tag in $(experiment_tags); do
        for dset in ${test_sets} ${train_set}; do
            subset=""
            [ "${dset}" != "${train_set}" ] || subset="--max_utts ${norm_max_utts}"
            out=${expdir}/${tag}/emb_${dset}
            log "Embedding ${dset} with ${tag} (log: ${out}/extract.log)"
            # shellcheck disable=SC2086
            ${gpu_cmd} --gpu "$((ngpu > 0 ? 1 : 0))" "${out}/extract.log" \
                python -m cdsvae.bin.extract_embeddings --expdir "${expdir}/${tag}" --feats "${dumpdir}/${dset}" \
                --outdir "${out}" --skip_bad "${skip_bad}" ${subset} \
                --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)"
            n_skipped=$(sed -n 's/.*"n_skipped": *\([0-9]*\).*/\1/p' "${out}/meta.json" | head -n 1)
            [ "${n_skipped:-0}" -eq 0 ] || log "Skipped ${n_skipped} utterance(s) of ${dumpdir}/${dset} at extraction" \
                "(shorter than one segment; --skip_bad true): listed in ${out}/meta.json"
        done
    done
}

stage_6() {
    local tag dset
    if [ "${modality}" = video ]; then
        log "Stage 6: judge metrics: ${expdir}/<tag>/ + ${expdir}/judge/ -> ${expdir}/<tag>/judge_results.json"
        require_tool cdsvae.bin.judge_eval
        check_experiments
        for tag in $(experiment_tags); do
            log "Judging ${tag} (log: ${expdir}/${tag}/judge_eval.log)"
            ${gpu_cmd} --gpu "$((ngpu > 0 ? 1 : 0))" "${expdir}/${tag}/judge_eval.log" \
                python -m cdsvae.bin.judge_eval --exp_dir "${expdir}/${tag}" --judge_dir "${expdir}/judge" \
                --data "data/${test_sets%% *}" ${judge_eval_args}
        done
        return
    fi
    log "Stage 6: scoring: ${expdir}/<tag>/emb_<set>/ -> ${expdir}/<tag>/score_<set>/ (trials, cosine scores raw and mean-normalised with emb_${train_set}, EER/minDCF)"
    require_tool cdsvae.bin.score
    check_experiments
    local out n_missing
    for tag in $(experiment_tags); do
        [ -f "${expdir}/${tag}/emb_${train_set}/s.scp" ] || die "${expdir}/${tag}/emb_${train_set}/s.scp not found: run stage 5 first"
        for dset in ${test_sets}; do
            out=${expdir}/${tag}/score_${dset}
            log "Scoring ${dset} with ${tag} (log: ${out}/score.log)"
            ${cpu_cmd} "${out}/score.log" \
                python -m cdsvae.bin.score --emb_dir "${expdir}/${tag}/emb_${dset}" \
                --utt2spk "data/${dset}/utt2spk" --outdir "${out}" \
                --mean_from "${expdir}/${tag}/emb_${train_set}"
            n_missing=$(sed -n 's/.*"n_without_embedding": *\([0-9]*\).*/\1/p' "${out}/results.json" | head -n 1)
            [ "${n_missing:-0}" -eq 0 ] || log "Left ${n_missing} utterance(s) of data/${dset} without embedding" \
                "(skipped in stages 2-5) out of the trials: listed in ${out}/results.json"
        done
    done
}

stage_7() {
    local tag exps=() dset out
    for tag in $(experiment_tags); do
        exps+=("${expdir}/${tag}")
    done
    log "Stage 7: report: ${exps[*]} -> <exp>/RESULTS.md and ${expdir}/RESULTS.md"
    check_experiments
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
