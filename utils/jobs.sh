# What the job launchers utils/run_local.sh and utils/run_slurm.sh share (sourced by both):
# their usage errors and --help, the job range JOB=a:b, the substitution of the job number,
# and the lines they print on stderr.  The launcher sets `prog` (its name) and `usage` (its
# usage line) before calling these.

tail_lines=20  # lines of a failed job's log shown on stderr

usage_error() {
    printf '%s\n%s: %s\n' "$usage" "$prog" "$*" >&2
    exit 2
}

# --help: the launcher's header comment, from its second line up to `set -euo pipefail`.
print_help() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

# parse_job_range ARG: when ARG is VAR=a:b or VAR=a (any variable name, e.g. JOB or SPK), sets
# jobvar=VAR, first=a, last=b (or a) and returns 0, so the launcher shifts it away; otherwise
# sets jobvar="", first=last=1 (a single job) and returns 1.  Either way njobs is the job count.
parse_job_range() {
    jobvar=""
    first=1
    last=1
    njobs=1
    [[ "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+)(:([0-9]+))?$ ]] || return 1
    jobvar=${BASH_REMATCH[1]}
    first=${BASH_REMATCH[2]}
    last=${BASH_REMATCH[4]:-$first}
    [ "$first" -le "$last" ] || usage_error "empty job range $1"
    njobs=$((last - first + 1))
}

# substitute TEXT ID: TEXT with every occurrence of the job variable replaced by ID.
substitute() {
    if [ -n "$jobvar" ]; then
        printf '%s' "${1//$jobvar/$2}"
    else
        printf '%s' "$1"
    fi
}

# say_jobs_done K: "<prog>: K/N jobs done (logs: LOGFILE)" on stderr.
say_jobs_done() {
    printf '%s: %d/%d jobs done (logs: %s)\n' "$prog" "$1" "$njobs" "$logfile_template" >&2
}

# show_log_tail LOG: the last lines of a failed job's log on stderr, between rulers.
show_log_tail() {
    printf -- '---- last %d lines of %s ----\n' "$tail_lines" "$1" >&2
    tail -n "$tail_lines" "$1" >&2
    printf -- '----\n' >&2
}
