#!/usr/bin/env bash
# Run a command, or an array of N jobs, as local processes with one log file per job
# (the `cmd.sh` backend for a single machine; the interface of Kaldi's run.pl).
#
#   utils/run_local.sh [options] JOB=1:N LOGFILE command [args...]
#   utils/run_local.sh [options] LOGFILE command [args...]
#
#   utils/run_local.sh JOB=1:4 exp/make_fbank/log/fbank.JOB.log \
#       python -m cdsvae.bin.make_fbank data/train/split4/JOB dump/train/feats.JOB
#
# Every occurrence of the job variable (any name, e.g. JOB or SPK) in LOGFILE and in the
# command is replaced by the job number.  The jobs run in parallel, at most
# --max-jobs-run at a time (default: all).  Each log starts with the command line and the
# start time and ends with "# Ended (code C) at <date>, elapsed time S seconds"; the
# command's stdout and stderr go to the log.
#
# The command is run by bash (with pipefail).  A command given as one argument is a shell
# command line used as it is ('cmd1 JOB | cmd2').  Otherwise the line is built like run.pl
# does: an argument without whitespace is used as it is, so shell syntax such as "|" or
# ">" works when given as a separate argument; an argument with whitespace is quoted.
#
# Options: --max-jobs-run N; --gpu N; --mem, --time and --num-threads take a value and are
# accepted for compatibility with utils/run_slurm.sh but ignored here.
#
# --gpu N (N >= 1): each job sees N GPUs through CUDA_VISIBLE_DEVICES, chosen among the GPUs
# this script sees (CUDA_VISIBLE_DEVICES when set, else nvidia-smi's list) as those held by the
# fewest running jobs of run_local.sh, so jobs started at the same time, by one call or by
# several, spread over the GPUs.  Each job's log and a line on stderr name its GPUs.  Where no
# GPU is listed, the environment is left as it is.  The running jobs are counted in
# $RUN_LOCAL_GPU_DIR (default: ${TMPDIR:-/tmp}/run_local_gpus.<uid>).
#
# A job array of several jobs prints "k/N jobs done" on stderr as its jobs finish.
#
# Exit status 0 when every job succeeds; otherwise 1, after printing to stderr which jobs
# failed and the last lines of the first failed job's log.  Bad usage exits 2.
set -euo pipefail

prog=${0##*/}
usage="Usage: $prog [--max-jobs-run N] [--mem X] [--gpu N] [--time T] [--num-threads N] [JOB=1:N] LOGFILE command [args...]"
# usage_error, print_help, parse_job_range, substitute, say_jobs_done, show_log_tail
. "$(dirname "${BASH_SOURCE[0]}")/jobs.sh"

max_jobs_run=0
gpus=0
while [ $# -gt 0 ]; do
    case "$1" in
        --max-jobs-run | --max_jobs_run)
            [ $# -ge 2 ] || usage_error "option $1 needs a value"
            [[ "$2" =~ ^[0-9]+$ ]] || usage_error "--max-jobs-run expects a non-negative integer, got '$2'"
            max_jobs_run=$2
            shift 2
            ;;
        --gpu)
            [ $# -ge 2 ] || usage_error "option $1 needs a value"
            [[ "$2" =~ ^[0-9]+$ ]] || usage_error "--gpu expects a non-negative integer, got '$2'"
            gpus=$2
            shift 2
            ;;
        --mem | --time | --num-threads | --num_threads)
            [ $# -ge 2 ] || usage_error "option $1 needs a value"
            shift 2
            ;;
        --help | -h)
            print_help
            exit 0
            ;;
        --*) usage_error "unknown option $1" ;;
        *) break ;;
    esac
done

if parse_job_range "${1:-}"; then
    shift
fi
[ $# -ge 2 ] || usage_error "expected a log file and a command"
logfile_template=$1
shift

cmd_template=""
if [ $# -eq 1 ]; then
    cmd_template=$1
else
    for arg in "$@"; do
        if [[ "$arg" =~ [[:space:]] ]] || [ -z "$arg" ]; then
            printf -v arg '%q' "$arg"
        fi
        cmd_template+="$arg "
    done
    cmd_template=${cmd_template% }
fi

# The GPUs this script sees, one id a line: CUDA_VISIBLE_DEVICES's entries when it is set (up
# to the first that names no device, as CUDA reads it), else nvidia-smi's indices.
gpu_ids() {
    if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
        printf '%s\n' "${CUDA_VISIBLE_DEVICES}" | tr ',' '\n' | sed 's/^ *//; s/ *$//' | sed '/^$/,$d; /^-/,$d'
    elif command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi -L 2>/dev/null | sed -n 's/^GPU \([0-9][0-9]*\):.*/\1/p'
    fi
}

gpu_dir=${RUN_LOCAL_GPU_DIR:-${TMPDIR:-/tmp}/run_local_gpus.$(id -u)}

# claim_gpus N HOLDER: the N GPUs held by the fewest live jobs (ties: the first listed), marked
# as held by process HOLDER until release_gpus; prints them comma-separated (nothing if none).
claim_gpus() {
    local want=$1 holder=$2 ids=() id k n f ranked=() chosen
    mapfile -t ids < <(gpu_ids)
    [ "${#ids[@]}" -gt 0 ] || return 0
    mkdir -p "$gpu_dir"
    exec 9>>"$gpu_dir/lock"
    flock 9
    for ((k = 0; k < ${#ids[@]}; k++)); do
        id=${ids[k]}
        n=0
        for f in "$gpu_dir/$id@"*; do
            [ -e "$f" ] || continue
            if kill -0 "${f##*@}" 2>/dev/null; then n=$((n + 1)); else rm -f "$f"; fi
        done
        ranked+=("$(printf '%06d %06d %s' "$n" "$k" "$id")")
    done
    chosen=$(printf '%s\n' "${ranked[@]}" | sort | head -n "$want" | awk '{print $3}' | sort -n | paste -sd, -)
    for id in ${chosen//,/ }; do
        : >"$gpu_dir/$id@$holder"
    done
    exec 9>&-
    printf '%s' "$chosen"
}

release_gpus() {  # release_gpus HOLDER
    rm -f "$gpu_dir"/*@"$1"
}

# Runs one job in the foreground; its exit status is the command's.
run_one() {
    local id=$1 log cmd start code elapsed job_gpus="" holder=$BASHPID n
    log=$(substitute "$logfile_template" "$id")
    cmd=$(substitute "$cmd_template" "$id")
    mkdir -p "$(dirname "$log")"
    start=$(date +%s)
    if [ "$gpus" -gt 0 ]; then
        job_gpus=$(claim_gpus "$gpus" "$holder")
    fi
    {
        printf '# %s\n' "$cmd"
        printf '# Started at %s\n' "$(date)"
        [ -z "$job_gpus" ] || printf '# GPU(s): CUDA_VISIBLE_DEVICES=%s\n' "$job_gpus"
    } >"$log"
    if [ -n "$job_gpus" ]; then
        printf '%s: %s on GPU %s\n' "$prog" "$log" "$job_gpus" >&2
        n=$(tr ',' '\n' <<<"$job_gpus" | wc -l)
        [ "$n" -ge "$gpus" ] || printf '%s: %s asks for %d GPU(s), but only %d are visible\n' \
            "$prog" "$log" "$gpus" "$n" >&2
    fi
    # run_one runs in a subshell of its own job: the export reaches this job alone.
    [ -z "$job_gpus" ] || export CUDA_VISIBLE_DEVICES=$job_gpus
    code=0
    bash -o pipefail -c "$cmd" >>"$log" 2>&1 </dev/null || code=$?
    [ -z "$job_gpus" ] || release_gpus "$holder"
    elapsed=$(($(date +%s) - start))
    {
        printf '# Accounting: time=%d threads=1\n' "$elapsed"
        printf '# Ended (code %d) at %s, elapsed time %d seconds\n' "$code" "$(date)" "$elapsed"
    } >>"$log"
    return "$code"
}

statusdir=$(mktemp -d "${TMPDIR:-/tmp}/run_local.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$statusdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A job array of more than one job reports, on stderr, each time more of its jobs are done.
shown=0
show_done() {
    [ -n "$jobvar" ] && [ "$njobs" -gt 1 ] || return 0
    local n=0 f
    for f in "$statusdir"/*; do
        [ -e "$f" ] && n=$((n + 1))
    done
    if [ "$n" -gt "$shown" ]; then
        shown=$n
        say_jobs_done "$n"
    fi
}

running=0
for ((id = first; id <= last; id++)); do
    if [ "$max_jobs_run" -gt 0 ] && [ "$running" -ge "$max_jobs_run" ]; then
        wait -n || true
        running=$((running - 1))
        show_done
    fi
    (
        code=0
        run_one "$id" || code=$?
        echo "$code" >"$statusdir/$id"
    ) &
    pids+=("$!")
    running=$((running + 1))
done
while [ -n "$(jobs -rp)" ]; do
    wait -n || true
    show_done
done
for pid in "${pids[@]}"; do
    wait "$pid" || true
done
show_done
pids=()

failed=()
for ((id = first; id <= last; id++)); do
    code=$(cat "$statusdir/$id" 2>/dev/null || echo "?")
    [ "$code" = 0 ] || failed+=("$id")
done
[ ${#failed[@]} -eq 0 ] && exit 0

first_log=$(substitute "$logfile_template" "${failed[0]}")
if [ -n "$jobvar" ]; then
    printf '%s: %d / %d jobs failed (%s=%s); log: %s\n' "$prog" "${#failed[@]}" "$njobs" \
        "$jobvar" "${failed[*]}" "$first_log" >&2
else
    printf '%s: command failed; log: %s\n' "$prog" "$first_log" >&2
fi
if [ -f "$first_log" ]; then
    show_log_tail "$first_log"
fi
exit 1
