# Command-line option parsing for recipe scripts, with Kaldi semantics.
#
# Source this file after defining the script's variables (their values are the
# defaults) and a `help_message`:
#
#     nj=4
#     use_gpu=false
#     help_message="Usage: $0 [options] <data-dir>"
#     . utils/parse_options.sh
#
# Then:
#   --nj 8, --nj=8              set the existing variable nj
#   --foo-bar x, --foo_bar x    both set foo_bar (dashes become underscores)
#   --use-gpu true              a variable whose value is true/false accepts only true/false
#   --config FILE               source FILE first, so it provides defaults that the other
#                               options on the command line override, wherever they appear
#   --help, -h                  print the help message and exit 0
#   --                          end of options
# An option naming no existing variable prints the help message and
# "unknown option --x" to stderr and exits 2; so do a missing value, a non-boolean
# value for a boolean and a missing config file.  Parsing stops at the first
# argument that is not an option; the positional arguments are left in "$@".
#
# All names used here start with __po_ and are unset afterwards, so a script's own
# variables are never clobbered.

__po_usage_error() {
    if [ -n "${help_message:-}" ]; then
        printf '%s\n' "$help_message" >&2
    else
        printf 'Usage: %s [options]\n' "$0" >&2
    fi
    printf '%s: %s\n' "${0##*/}" "$*" >&2
    exit 2
}

# First pass: source every --config file, so the command line overrides them.
__po_i=1
while [ "$__po_i" -le $# ]; do
    __po_arg=${!__po_i}
    case "$__po_arg" in
        --config)
            __po_i=$((__po_i + 1))
            [ "$__po_i" -le $# ] || __po_usage_error "option --config needs a value"
            __po_config=${!__po_i}
            [ -f "$__po_config" ] || __po_usage_error "config file not found: $__po_config"
            # shellcheck disable=SC1090
            . "$__po_config"
            __po_i=$((__po_i + 1))
            ;;
        --config=*)
            __po_config=${__po_arg#--config=}
            [ -f "$__po_config" ] || __po_usage_error "config file not found: $__po_config"
            # shellcheck disable=SC1090
            . "$__po_config"
            __po_i=$((__po_i + 1))
            ;;
        --help | -h | --) break ;;
        --*=*) __po_i=$((__po_i + 1)) ;;
        --*) __po_i=$((__po_i + 2)) ;;
        *) break ;;
    esac
done

# Second pass: the options themselves.
while [ $# -gt 0 ]; do
    case "$1" in
        --help | -h)
            if [ -n "${help_message:-}" ]; then
                printf '%s\n' "$help_message"
            else
                printf 'Usage: %s [options]\n' "$0"
            fi
            exit 0
            ;;
        --)
            shift
            break
            ;;
        --config)
            shift 2
            continue
            ;;
        --config=*)
            shift
            continue
            ;;
        --*=*)
            __po_opt=${1%%=*}
            __po_value=${1#*=}
            shift
            ;;
        --*)
            __po_opt=$1
            [ $# -ge 2 ] || __po_usage_error "option $__po_opt needs a value"
            __po_value=$2
            shift 2
            ;;
        *) break ;;
    esac
    __po_name=${__po_opt#--}
    __po_name=${__po_name//-/_}
    if [[ ! "$__po_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [[ "$__po_name" == __po_* ]] \
        || [ -z "${!__po_name+set}" ]; then
        __po_usage_error "unknown option $__po_opt"
    fi
    if [ "${!__po_name}" = true ] || [ "${!__po_name}" = false ]; then
        if [ "$__po_value" != true ] && [ "$__po_value" != false ]; then
            __po_usage_error "option $__po_opt is boolean: expected true or false, got '$__po_value'"
        fi
    fi
    printf -v "$__po_name" '%s' "$__po_value" 2>/dev/null \
        || __po_usage_error "option $__po_opt cannot be set (read-only variable $__po_name)"
done

unset __po_i __po_arg __po_config __po_opt __po_name __po_value
unset -f __po_usage_error
true
