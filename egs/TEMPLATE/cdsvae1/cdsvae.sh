#!/usr/bin/env bash
# The seven stages shared by every cdsvae recipe.  A recipe's run.sh sets its corpus
# options and calls this script (symlinked into the recipe) from the recipe directory,
# passing "$@" on, so `./run.sh --stage 4 --ngpu 4` works everywhere.  See README.md here.
#
# This file holds the options, their checks, the shared helpers (a few, such as the stage
# fingerprints and job splits, are used by speech only) and the stage loop; the stages themselves are stage_1 ... stage_7 of stages/speech.sh or stages/video.sh
# (--modality), next to the real location of this script.
set -euo pipefail

# This script's directory, through the recipe's symlink: egs/TEMPLATE/cdsvae1.
cdsvae_dir=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# log and log_up: console lines "<time> (<file>:<line>:<function>) <message>"
. "${cdsvae_dir}/utils/log.sh"
SECONDS=0

# Error messages carry the file:line of the caller, like log().
usage_error() {
    log_up 1 "Error: $*"
    echo "See '$0 --help'." >&2
    exit 2
}

die() {
    log_up 1 "Error: $*"
    exit 1
}

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
judges=true            # speech: train the speaker and content judges (stage 5) and measure disentanglement (stage 6)
judge_conf=conf/judges.yaml  # speech: judge, probe and swap sizes and the judges' gate thresholds
speaker_judge=         # speech: a pretrained speechbrain speaker model dir to judge with instead of training one
unit_map=              # speech: folding map of the content units for scoring, e.g. local/phones.61-39.map
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
trials=                # speech: trial list for the first test set instead of all pairs (Kaldi or VoxCeleb format)
trials_format=auto     # speech: format of --trials: auto (from its first line), kaldi or voxceleb

help_message=$(cat <<EOF
Usage: $0 --train_set <name> --test_sets "<names>" [options]

Stages (the numbers are the same in every recipe):
  1  data preparation: local/data.sh -> data/<set>/ (speech: Kaldi data dirs, validated)
  2  features: data/<set> -> ${dumpdir}/<set>/ (log-mel ark/scp, utt2num_frames, CMVN); video: skipped
  3  motion augmentation: WORLD voice conversion of <train_set> -> ${dumpdir}/<train_set>_vc/; video: skipped (on the fly)
  4  training: ${dumpdir}/ -> ${expdir}/<tag>/ for each of --train_configs (conf/train.yaml -> cdsvae, conf/train_X.yaml -> X)
     and each of --seeds (<tag>_seed<N>); the data paths come from --dumpdir, --train_set and --dev_set,
     and an experiment trained on other inputs is refused (see --retrain)
  5  extraction: speech: the speaker and content judges -> ${expdir}/judge/{speaker,content}/ (shared by
     every experiment; stops when a judge misses its gate in --judge_conf), s and z embeddings of the test
     sets and of (up to --norm_max_utts utterances of) <train_set> -> ${expdir}/<tag>/emb_<set>/;
     video: judge classifier -> ${expdir}/judge/; then each experiment's demo -> ${expdir}/<tag>/demo/
     (speech: wav files with judged swaps; video: swap grids and samples)
  6  scoring: speech: trials, cosine scores (raw and after subtracting the mean of <train_set>),
     EER/minDCF -> ${expdir}/<tag>/score_<set>/, and disentanglement (CTC probes of z and s, swaps
     judged for speaker and content) -> ${expdir}/<tag>/disentangle_<set>/; video: judge metrics
  7  report: ${expdir}/<tag>/RESULTS.md, plots, and ${expdir}/RESULTS.md comparing the experiments
     (read from the results of stages 5-6; no model is loaded), and each experiment packed for use outside
     the recipe: ${expdir}/<tag>/packed/ and packed.tar.gz (config, chosen weights, CMVN, features, README)

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
  --judges BOOL         speech: train the judges (stage 5) and measure disentanglement (stage 6) (default: ${judges})
  --judge_conf FILE     speech: judge, probe and swap settings and gate thresholds (default: ${judge_conf})
  --speaker_judge DIR   speech: judge speakers with this pretrained speechbrain model (a directory with
                        hyperparams.yaml, loaded by EncoderClassifier.from_hparams) instead of training
                        an ECAPA-TDNN in the recipe (default: "${speaker_judge}")
  --unit_map FILE       speech: fold the content units with this map before scoring, e.g. TIMIT's
                        61 phones to 39 (default: "${unit_map}")
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
  --trials FILE         speech: score the first test set on this trial list instead of all pairs (the other
                        test sets keep all pairs); Kaldi 'utt1 utt2 target|nontarget' or VoxCeleb
                        '1|0 path1 path2', whose path names the utterance id with the extension dropped and
                        '/' replaced by '-' (id10270/x6uYqmx31kE/00001.wav -> id10270-x6uYqmx31kE-00001)
                        (default: "${trials}": all pairs)
  --trials_format F     speech: auto (from the first line of --trials), kaldi or voxceleb (default: ${trials_format})
  --config FILE         read defaults for these options from FILE (shell assignments)
  --help                print this message
EOF
)

log "$0${*:+$(printf ' %q' "$@")}"
if [ ! -f utils/parse_options.sh ]; then
    die "${PWD}/utils/parse_options.sh not found: run this script from a recipe directory (see egs/TEMPLATE/cdsvae1/README.md)"
fi
. utils/parse_options.sh

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
# Every node runs this script on the shared experiment dirs: only one may move them aside.
[ "${retrain}" = false ] || [ "${num_nodes}" -eq 1 ] \
    || usage_error "--retrain true with --num_nodes ${num_nodes}: move the experiments aside once (e.g. mv exp/<tag> exp/<tag>.old1), then start every node without --retrain"
[ "${num_nodes}" -eq 1 ] || [ "${ngpu}" -ge 1 ] || usage_error "--num_nodes ${num_nodes} needs --ngpu >= 1 (GPUs per node)"
case "${modality}" in speech | video) ;; *) usage_error "--modality must be speech or video, got '${modality}'" ;; esac
case "${judges}" in true | false) ;; *) usage_error "--judges expects true or false, got '${judges}'" ;; esac
[ -n "${train_set}" ] || usage_error "--train_set is required"
[ -n "${test_sets}" ] || usage_error "--test_sets is required"
for seed in ${seeds}; do
    [[ "${seed}" =~ ^[0-9]+$ ]] || usage_error "--seeds expects non-negative integers, got '${seed}'"
done
[ "${norm_max_utts}" -ge 1 ] || usage_error "--norm_max_utts must be at least 1"
[ "${progress_secs}" -ge 1 ] || usage_error "--progress_secs must be at least 1"
case "${trials_format}" in auto | kaldi | voxceleb) ;; *) usage_error "--trials_format must be auto, kaldi or voxceleb, got '${trials_format}'" ;; esac
[ -z "${trials}" ] || [ -f "${trials}" ] || usage_error "--trials ${trials}: file not found"

# Derived from the options: the device of the tools, the GPUs of one job of stages 5-6, and
# the test set that the judge (video) and the main results table use.
device=cpu
[ "${ngpu}" -eq 0 ] || device=cuda
job_gpus=$((ngpu > 0 ? 1 : 0))
first_test_set=${test_sets%% *}

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
    # The run uses the first --ngpu of them; utils/run_local.sh spreads the jobs of stages 5-6 over
    # these and names each job's GPU on the console.
    if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
        CUDA_VISIBLE_DEVICES=$(printf '%s\n' "${CUDA_VISIBLE_DEVICES}" | tr ',' '\n' | head -n "${ngpu}" | paste -sd, -)
    else
        CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((ngpu - 1)))
    fi
    export CUDA_VISIBLE_DEVICES
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

# The trainer option for an experiment's seed: none for "-" (the config's own seed).
seed_option() {  # seed_option <seed>
    [ "$1" = - ] || echo "--train.seed $1"
}

experiment_tags() {
    experiments | cut -d' ' -f2
}

experiment_dirs() {
    local tag
    for tag in $(experiment_tags); do
        echo "${expdir}/${tag}"
    done
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
    utils/split_data.sh "${data}" "${n}" >&2 || return 1  # errexit is off inside $(...)
    echo "${n}"
}

# An integer field of a JSON file that a cdsvae.bin tool wrote (its first occurrence), or nothing.
json_int() {  # json_int <file> <key>
    sed -n "s/.*\"$2\": *\([0-9]*\).*/\1/p" "$1" | head -n 1
}

# A cdsvae.bin tool's error: the last line of its output <msg>, without "<tool>: error: ".
tool_error() {  # tool_error <msg>
    printf '%s\n' "$1" | tail -n 1 | sed 's/^[a-z_]*: error: //'
}

# What the check of stage 4 (cdsvae.bin.train --check_inputs --experiments) printed for one
# experiment: "checked", "finished: step S, E/N epochs", or nothing when it was not reached.
check_result() {  # check_result <output> <tag>
    printf '%s\n' "$1" | awk -v c="checked ${expdir}/$2" -v f="finished ${expdir}/$2: " '
        $0 == c { r = "checked" }
        index($0, f) == 1 { r = "finished: " substr($0, length(f) + 1) }
        END { print r }'
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

# Stage 1 of both modalities: local/data.sh writes data/<set>/ for every set of the run.
prepare_data() {
    log "Stage 1: data preparation: local/data.sh${local_data_opts:+ ${local_data_opts}} -> data/{$(data_sets | tr ' ' ',')}"
    [ -x local/data.sh ] || die "local/data.sh not found or not executable in ${PWD}"
    # shellcheck disable=SC2086
    local/data.sh ${local_data_opts}
    local dset
    for dset in $(data_sets); do
        [ -d "data/${dset}" ] || die "local/data.sh did not create data/${dset}"
    done
}

# One run at a time per output.  A stage takes an exclusive flock on a lock file for each
# directory it writes, before writing: every experiment of the run, ${expdir}/.<tag>.lock
# (stages 4-7, lock_experiments below); the judges of stage 5, ${expdir}/.judge.lock, and the
# features of stages 2-3, ${dumpdir}/.lock (in the stage files).  A lock is held until this script ends (its file
# descriptor stays open, and the stage's tools inherit it, so it lasts while any of them still
# writes); the kernel drops it when its holders die, so the lock of a killed run is taken over,
# never obeyed.  The holder writes its pid and host into the file, for the one-line refusal of
# a second run.  With --num_nodes > 1 every node runs this script on the same directories:
# there no locks are taken.
declare -A held_locks=()
hold_lock() {  # hold_lock <dir written> <lock file>
    local dir=$1 file=$2 fd pid="" host="" what="" i
    [ -z "${held_locks[${file}]:-}" ] || return 0
    [ "${num_nodes}" -eq 1 ] || return 0
    mkdir -p "$(dirname "${file}")"
    exec {fd}>>"${file}"
    if ! flock --nonblock "${fd}"; then
        exec {fd}>&-
        # the holder writes its line just after taking the lock: give it a moment
        for ((i = 0; i < 10; i++)); do
            read -r pid host what 2>/dev/null <"${file}" || true
            [ -z "${pid}" ] || break
            sleep 0.1
        done
        die "${dir} is being written by process ${pid:-?} on host ${host:-?}${what:+ (${what})};" \
            "this run will not write it at the same time: wait for that run to end, or stop it (lock: ${file})"
    fi
    printf '%s %s %s\n' "$$" "$(hostname)" "stage ${current_stage} of ${PWD}" >"${file}"
    held_locks[${file}]=${fd}
}

lock_experiments() {
    local tag
    for tag in $(experiment_tags); do
        hold_lock "${expdir}/${tag}" "${expdir}/.${tag}.lock"
    done
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

# Stage 4's console after the trainings: the WARNING lines a training added to <tag>/train.log
# (from byte <size> on), each message once with its count; messages that differ only in their
# numbers count as one, shown with the numbers of the last.
report_warnings() {  # report_warnings <tag> <size of train.log before the training>
    local file=${expdir}/$1/train.log lines count text
    [ -f "${file}" ] || return 0
    lines=$(tail -c +$(($2 + 1)) "${file}" | awk '
        /^[0-9-]+ [0-9:]+ WARNING / {
            text = $0; sub(/^[0-9-]+ [0-9:]+ WARNING /, "", text)
            key = text; gsub(/[0-9]+([.][0-9]+)?/, "#", key)
            if (!(key in n)) order[++kinds] = key
            n[key]++; last[key] = text
        }
        END { for (i = 1; i <= kinds; i++) printf "%d\t%s\n", n[order[i]], last[order[i]] }')
    [ -n "${lines}" ] || return 0
    log "Warnings of $1 ($(printf '%s\n' "${lines}" | awk -F'\t' '{ t += $1 } END { print t }') in ${file}):"
    while IFS=$'\t' read -r count text; do
        log "  ${count}x ${text}"
    done <<<"${lines}"
}

# Stage 4 of both modalities: trains every experiment (experiments above) with the trainer
# options of this run: <data options> from the stage_4 of the modality (the data paths of
# this run's sets: a config never trains on other sets than --dumpdir, --train_set and
# --dev_set say; --train_args come after and can still override them), and the device of --ngpu.
train_experiments() {  # train_experiments <data options...>
    local where=CPU
    [ "${ngpu}" -eq 0 ] || where="${ngpu} GPU(s) per node x ${num_nodes} node(s)"
    log "Stage 4: training on ${where}: ${dumpdir}/ -> ${expdir}/{$(experiment_tags | paste -sd,)}"
    require_tool cdsvae.bin.train
    local launcher config tag seed cmd logfile seed_args args="$* --train.device ${device}" parallel=1 rc msg
    launcher=$(train_launcher)
    # Every experiment is checked before any starts, all in one process (one start of Python and
    # torch): one trained on other inputs, or whose training data cannot fill one global batch of
    # this run's processes, stops the stage.
    local nproc=$(((ngpu > 1 ? ngpu : 1) * num_nodes)) listing="" tags=() result
    declare -A finished=()  # tag -> "step S, E/N epochs" of a run trained to the end already
    while read -r config tag seed; do
        [ -f "${config}" ] || die "training config ${config} not found"
        seed_args=$(seed_option "${seed}")
        if [ "${retrain}" = true ] && [ -e "${expdir}/${tag}" ]; then
            move_aside "${expdir}/${tag}"
        fi
        # shellcheck disable=SC2086
        listing+="$(printf '%q ' --config "${config}" --outdir "${expdir}/${tag}" ${args} ${seed_args} ${train_args})"$'\n'
        tags+=("${tag}")
    done < <(experiments)
    if ! msg=$(printf '%s' "${listing}" | python -m cdsvae.bin.train --check_inputs --nproc "${nproc}" \
        --experiments - 2>&1); then
        # The experiment that failed: the first without a result line.
        for tag in "${tags[@]}"; do
            [ -n "$(check_result "${msg}" "${tag}")" ] || break
        done
        msg=$(tool_error "${msg}")
        case "${msg}" in
            *"global batch"*)
                die "${tag}: ${msg} (--ngpu sets the processes per node, --train_args" \
                    "'--train.batch_size B' the batch)" ;;
            *)
                die "$(printf '%s' "${msg}" | sed 's/; train into a new --outdir or move .* aside$//'); to go on," \
                    "rerun with --retrain true (moves ${expdir}/${tag} aside) or choose a new --tag_suffix" ;;
        esac
    fi
    for tag in "${tags[@]}"; do
        result=$(check_result "${msg}" "${tag}")
        finished[${tag}]=${result#finished: }
        [ "${result}" != checked ] || finished[${tag}]=""
    done
    # Several CPU trainings at once (--train_jobs): each is its own process, so results do not change.
    if [ "${ngpu}" -eq 0 ] && [ "${num_nodes}" -eq 1 ]; then
        parallel=${train_jobs}
    fi
    training_tags=()
    declare -A launch_logs=() log_sizes=()
    last_progress=${SECONDS}
    while read -r config tag seed; do
        if [ -n "${finished[${tag}]:-}" ]; then
            log "Trained ${tag} already (${finished[${tag}]}): not started again (--retrain true trains it afresh)"
            continue
        fi
        seed_args=$(seed_option "${seed}")
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
        log_sizes[${tag}]=$(stat -c %s "${expdir}/${tag}/train.log" 2>/dev/null || echo 0)
        # shellcheck disable=SC2086
        set -- ${cmd} --gpu "${ngpu}" "${logfile}" \
            ${launcher} --config "${config}" --outdir "${expdir}/${tag}" ${args} ${seed_args} ${train_args}
        (
            if "$@" </dev/null; then rc=0; else rc=$?; fi
            echo "${rc}" >"${expdir}/${tag}/log/launch.rc"
        ) &
        training_tags+=("${tag}")
        launch_logs[${tag}]=${logfile}
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
            failed+=("${tag} (exit ${rc}, log: ${launch_logs[${tag}]})")
        fi
    done
    for tag in "${training_tags[@]}"; do
        report_warnings "${tag}" "${log_sizes[${tag}]}"
    done
    [ "${#failed[@]}" -eq 0 ] || die "training failed: ${failed[*]}"
}

# The end of stage 5: each experiment's demo -> ${expdir}/<tag>/demo/ (speech: the listening
# demo; video: swap grids and samples), from the data the arguments name.  Stage 7 links it.
demo_step() {  # demo_step <cdsvae.bin.make_demo arguments>...
    require_tool cdsvae.bin.make_demo
    local tag
    for tag in $(experiment_tags); do
        log "Demo of ${tag} -> ${expdir}/${tag}/demo/ (log: ${expdir}/${tag}/make_demo.log)"
        ${gpu_cmd} --gpu "${job_gpus}" "${expdir}/${tag}/make_demo.log" \
            python -m cdsvae.bin.make_demo --expdir "${expdir}/${tag}" --device "${device}" "$@"
    done
}

# Stops when an experiment's recorded training inputs changed since it was trained, or when the
# given feature dirs were made with other options than its training features.
check_experiments() {  # check_experiments [feature dir...]
    require_tool cdsvae.bin.check_experiment
    local dirs=() feats=() msg
    mapfile -t dirs < <(experiment_dirs)
    [ $# -eq 0 ] || feats=(--feats "$@")
    if ! msg=$(python -m cdsvae.bin.check_experiment "${dirs[@]}" "${feats[@]}" 2>&1 </dev/null); then
        die "$(tool_error "${msg}"); rerun stage 4 with" \
            "--retrain true (moves the experiment aside) or choose a new --tag_suffix"
    fi
}

# Stage 7 of both modalities: checks the experiments, then <writer> (a function of the
# modality's stage file) writes the reports from their directories.
report_stage() {  # report_stage <writer>
    local exps=()
    mapfile -t exps < <(experiment_dirs)
    log "Stage 7: report: ${exps[*]} -> <exp>/RESULTS.md and ${expdir}/RESULTS.md, each with its page index.html"
    check_experiments
    "$1" "${exps[@]}"
    log "Results: ${expdir}/RESULTS.md (a committed RESULTS.md in ${PWD}, if any, is the recipe's reference run);" \
        "page with figures and demos: ${expdir}/index.html"
}

# After the reports: each experiment packed (python -m cdsvae.bin.pack) into <exp>/packed/ and
# <exp>/packed.tar.gz, for cdsvae.Disentangler, cdsvae.bin.embed and cdsvae.bin.convert.
pack_experiments() {
    require_tool cdsvae.bin.pack
    local tag
    for tag in $(experiment_tags); do
        log "Stage 7: pack: ${expdir}/${tag} -> ${expdir}/${tag}/packed/ and ${expdir}/${tag}/packed.tar.gz"
        python -m cdsvae.bin.pack --expdir "${expdir}/${tag}"
    done
}

# stage_1 ... stage_7 of --modality.
# shellcheck source=stages/speech.sh
. "${cdsvae_dir}/stages/${modality}.sh"

for ((n = stage; n <= stop_stage; n++)); do
    current_stage=${n}
    [ "${n}" -lt 4 ] || lock_experiments
    "stage_${n}"
done

log "Successfully finished. [elapsed=${SECONDS}s]"
