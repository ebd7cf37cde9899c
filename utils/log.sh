# Console lines of the recipe scripts, on stderr:
#     2024-05-01T12:00:00 (cdsvae.sh:123:stage_2) message
# with the time and the file, line and function that called log.  Source this file:
#     . utils/log.sh
#
#   log MESSAGE...          a line naming the place that called log
#   log_up N MESSAGE...     a line naming the place N calls further up: a function that
#                           reports on behalf of its caller (e.g. an error helper) uses
#                           `log_up 1 ...`, so the line names where that function was called

log_up() {
    local n=$1
    shift
    local file=${BASH_SOURCE[n + 1]-${0}}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${file##*/}:${BASH_LINENO[n]-0}:${FUNCNAME[n + 1]-main}) $*" >&2
}

log() {
    log_up 1 "$@"
}
