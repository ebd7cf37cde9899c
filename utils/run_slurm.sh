#!/usr/bin/env bash
# Run a command, or an array of N jobs, on a Slurm cluster: the `cmd.sh` backend for
# clusters, with the interface and log contract of utils/run_local.sh (Kaldi's slurm.pl).
#
#   utils/run_slurm.sh [options] JOB=1:N LOGFILE command [args...]
#   utils/run_slurm.sh [options] LOGFILE command [args...]
#
# One `sbatch --wait` call submits a job array with one task per job (a single job for
# the second form) and blocks until every task has ended.  Each task runs
# utils/run_local.sh on its node with JOB replaced by its task id, so each job writes its
# own LOGFILE exactly as it would locally (command line, start time, output,
# "# Ended (code C) ...").  The job script and Slurm's own output files (where Slurm
# reports time limits, out-of-memory kills and node failures) go to
# $(dirname LOGFILE)/q/.  The working directory and the environment (PATH from path.sh
# included) are those of the submitting shell, so the cluster needs a shared filesystem.
#
# Options (each takes a value):
#   --mem X            memory per job             -> sbatch --mem=X        (e.g. 8G)
#   --gpu N            GPUs per job               -> sbatch --gres=gpu:N   (when N > 0)
#   --time T           wall-clock limit per job   -> sbatch --time=T       (e.g. 24:00:00)
#   --num-threads N    CPU cores per job          -> sbatch --cpus-per-task=N
#   --max-jobs-run M   tasks running at once      -> sbatch --array=1-N%M
#   --partition P      partition                  -> sbatch --partition=P
#   --sbatch-opts S    further sbatch options, split on whitespace (site defaults from
#                      cmd.sh, e.g. "--account=abc --qos=high")
#   --dry-run true     write the job script, print the sbatch command line, submit nothing
#   --poll-secs N      while an array of several jobs runs, print "k/N jobs done" on stderr
#                      when more have ended, checking every N seconds (default 10)
#
# Exit status 0 when every job's log ends with code 0; otherwise 1, after printing to
# stderr which jobs failed and the last lines of the first failed job's log (a job that
# left no end line was killed: see q/).  Interrupting this script cancels the Slurm job.
# Bad usage exits 2.
set -euo pipefail

prog=${0##*/}
usage="Usage: $prog [--mem X] [--gpu N] [--time T] [--num-threads N] [--max-jobs-run M] [--partition P] [--sbatch-opts S] [--dry-run true|false] [JOB=1:N] LOGFILE command [args...]"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# usage_error, print_help, parse_job_range, substitute, say_jobs_done, show_log_tail
. "$here/jobs.sh"

mem=""
gpu=0
time_limit=""
num_threads=""
max_jobs_run=0
partition=""
sbatch_opts=""
dry_run=false
poll_secs=10
while [ $# -gt 0 ]; do
    case "$1" in
        --help | -h)
            print_help
            exit 0
            ;;
        --*)
            [ $# -ge 2 ] || usage_error "option $1 needs a value"
            opt=${1#--}
            opt=${opt//-/_}
            case "$opt" in
                mem) mem=$2 ;;
                gpu) gpu=$2 ;;
                time) time_limit=$2 ;;
                num_threads) num_threads=$2 ;;
                max_jobs_run) max_jobs_run=$2 ;;
                partition) partition=$2 ;;
                sbatch_opts) sbatch_opts=$2 ;;
                dry_run) dry_run=$2 ;;
                poll_secs) poll_secs=$2 ;;
                *) usage_error "unknown option $1" ;;
            esac
            shift 2
            ;;
        *) break ;;
    esac
done
[[ "$gpu" =~ ^[0-9]+$ ]] || usage_error "--gpu expects a non-negative integer, got '$gpu'"
[[ "$max_jobs_run" =~ ^[0-9]+$ ]] || usage_error "--max-jobs-run expects a non-negative integer, got '$max_jobs_run'"
[ -z "$num_threads" ] || [[ "$num_threads" =~ ^[1-9][0-9]*$ ]] \
    || usage_error "--num-threads expects a positive integer, got '$num_threads'"
[ "$dry_run" = true ] || [ "$dry_run" = false ] || usage_error "--dry-run expects true or false, got '$dry_run'"
[[ "$poll_secs" =~ ^[1-9][0-9]*$ ]] || usage_error "--poll-secs expects a positive integer, got '$poll_secs'"

if parse_job_range "${1:-}"; then
    shift
fi
[ $# -ge 2 ] || usage_error "expected a log file and a command"
logfile_template=$1
shift

logdir=$(dirname "$logfile_template")
qdir=$logdir/q
name=$(basename "$logfile_template")
[ -z "$jobvar" ] || name=${name//.$jobvar/}
[ -z "$jobvar" ] || name=${name//$jobvar/}
name=${name%.log}
mkdir -p "$qdir"
script=$qdir/$name.sh

# The job script replaces the job variable at run time with the task id.
{
    echo '#!/usr/bin/env bash'
    echo "# Written by utils/run_slurm.sh on $(date); submitted with sbatch from $PWD."
    echo 'set -euo pipefail'
    printf 'cd %q\n' "$PWD"
    printf 'jobvar=%q\n' "$jobvar"
    printf 'log=%q\n' "$logfile_template"
    printf 'args=('
    printf ' %q' "$@"
    printf ' )\n'
    cat <<'EOF'
if [ -n "$jobvar" ]; then
    id=${SLURM_ARRAY_TASK_ID:?not running as a Slurm array task}
    log=${log//$jobvar/$id}
    args=("${args[@]//$jobvar/$id}")
fi
EOF
    printf 'exec %q "$log" "${args[@]}"\n' "$here/run_local.sh"
} >"$script"
chmod +x "$script"

sbatch_cmd=(sbatch --parsable --wait "--job-name=$name" "--chdir=$PWD")
if [ -n "$jobvar" ]; then
    array="--array=$first-$last"
    [ "$max_jobs_run" -eq 0 ] || array+="%$max_jobs_run"
    sbatch_cmd+=("$array" "--output=$qdir/$name.%a.out")
else
    sbatch_cmd+=("--output=$qdir/$name.%j.out")
fi
[ -z "$mem" ] || sbatch_cmd+=("--mem=$mem")
[ "$gpu" -eq 0 ] || sbatch_cmd+=("--gres=gpu:$gpu")
[ -z "$time_limit" ] || sbatch_cmd+=("--time=$time_limit")
[ -z "$num_threads" ] || sbatch_cmd+=("--cpus-per-task=$num_threads")
[ -z "$partition" ] || sbatch_cmd+=("--partition=$partition")
if [ -n "$sbatch_opts" ]; then
    read -r -a extra <<<"$sbatch_opts"
    sbatch_cmd+=("${extra[@]}")
fi
sbatch_cmd+=("$script")

if [ "$dry_run" = true ]; then
    printf '%q ' "${sbatch_cmd[@]}" | sed 's/ $//'
    echo
    exit 0
fi

command -v sbatch >/dev/null 2>&1 \
    || { echo "$prog: sbatch not found: is this a Slurm submit host? (cmd_backend=local in cmd.sh runs jobs locally)" >&2; exit 1; }

# Remove stale logs so that a log without an end line can only come from this run.
for ((id = first; id <= last; id++)); do
    rm -f "$(substitute "$logfile_template" "$id")"
done

submit_out=$qdir/$name.sbatch
"${sbatch_cmd[@]}" >"$submit_out" 2>&1 &
sbatch_pid=$!
cancel() {
    local jobid
    jobid=$(head -n 1 "$submit_out" 2>/dev/null | cut -d';' -f1)
    if [[ "$jobid" =~ ^[0-9]+$ ]]; then
        echo "$prog: cancelling Slurm job $jobid" >&2
        scancel "$jobid" || true
    fi
    kill "$sbatch_pid" 2>/dev/null || true
}
trap 'cancel; exit 130' INT
trap 'cancel; exit 143' TERM
# While the array runs, say how many of its jobs have ended (their logs' last line), checking
# every --poll-secs seconds.
shown=0
while kill -0 "$sbatch_pid" 2>/dev/null; do
    for ((tick = 0; tick < poll_secs; tick++)); do
        kill -0 "$sbatch_pid" 2>/dev/null || break
        sleep 1
    done
    [ -n "$jobvar" ] && [ "$njobs" -gt 1 ] || continue
    ended=0
    for ((id = first; id <= last; id++)); do
        ! grep -q '^# Ended (code ' "$(substitute "$logfile_template" "$id")" 2>/dev/null || ended=$((ended + 1))
    done
    if [ "$ended" -gt "$shown" ]; then
        shown=$ended
        say_jobs_done "$ended"
    fi
done
sbatch_code=0
wait "$sbatch_pid" || sbatch_code=$?
trap - INT TERM

jobid=$(head -n 1 "$submit_out" 2>/dev/null | cut -d';' -f1)
if ! [[ "$jobid" =~ ^[0-9]+$ ]]; then
    echo "$prog: sbatch failed (exit $sbatch_code): $(tr '\n' ' ' <"$submit_out")" >&2
    exit 1
fi

failed=()
for ((id = first; id <= last; id++)); do
    log=$(substitute "$logfile_template" "$id")
    end=$(grep '^# Ended (code ' "$log" 2>/dev/null | tail -n 1 || true)
    [[ "$end" == "# Ended (code 0)"* ]] || failed+=("$id")
done
[ ${#failed[@]} -eq 0 ] && exit 0

first_log=$(substitute "$logfile_template" "${failed[0]}")
if [ -n "$jobvar" ]; then
    printf '%s: %d / %d jobs of Slurm job %s failed (%s=%s); log: %s\n' "$prog" "${#failed[@]}" \
        "$njobs" "$jobid" "$jobvar" "${failed[*]}" "$first_log" >&2
else
    printf '%s: Slurm job %s failed; log: %s\n' "$prog" "$jobid" "$first_log" >&2
fi
if [ -f "$first_log" ]; then
    grep -q '^# Ended (code ' "$first_log" \
        || echo "$prog: $first_log has no end line: the job was killed; see Slurm's output in $qdir/" >&2
    show_log_tail "$first_log"
else
    echo "$prog: $first_log was never written; see Slurm's output in $qdir/" >&2
fi
exit 1
