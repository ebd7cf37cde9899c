#!/usr/bin/env bash
# Build (or check) the cdsvae Python environment; `make demo` and `make test` call this.
#
#   tools/install.sh                      create what is missing or out of date, else return at once
#   CDSVAE_DEPS=DIR tools/install.sh      keep the large dependency environment at DIR
#   tools/install.sh --with-slurm         also install Slurm and munge (apt, as root), so that the
#                                         tests marked `slurm` run utils/run_slurm.sh and srun on a
#                                         one-node cluster of this machine instead of skipping
#   tools/install.sh --with-browser       also install Debian's chromium and chromium-driver (apt, as root),
#                                         so that the results-page test opens exp/index.html in headless
#                                         Chromium instead of skipping
#
# Two layers:
#   * a dependency environment (torch, torchaudio, pyworld, ...; several GB) under
#     ${XDG_CACHE_HOME:-~/.cache}/cdsvae/deps-<hash>, keyed by a hash of tools/requirements.txt
#     and this script. Clones of the repository on one machine (CI runs included) share it.
#   * tools/venv, a small venv of this clone (a few MB) that sees the dependency environment
#     through a .pth file and holds the editable install of cdsvae and its entry points.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
req="$here/requirements.txt"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3

log() { echo "[tools/install.sh] $*" >&2; }

with_slurm=false
with_browser=false
for arg in "$@"; do
    case "$arg" in
        --with-slurm) with_slurm=true ;;
        --with-browser) with_browser=true ;;
        *) log "unknown option $arg (usage: tools/install.sh [--with-slurm] [--with-browser])"; exit 2 ;;
    esac
done

if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    log "Python 3.11 is required; set PYTHON=/path/to/python3.11"
    exit 1
fi

# Bump when build_deps changes in a way that needs a rebuild; editing other parts of this
# script must not cost a multi-GB rebuild.
deps_layout=1
key=$( { cat "$req"; echo "layout $deps_layout"; } | sha256sum | cut -c1-12)
deps=${CDSVAE_DEPS:-${XDG_CACHE_HOME:-$HOME/.cache}/cdsvae/deps-$key}
venv="$here/venv"
site_rel=lib/python3.11/site-packages

can_apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
}

apt_install() {
    log "installing system packages: $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

check_system_tools() {
    local missing=()
    command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
    [ ${#missing[@]} -eq 0 ] && return 0
    if can_apt_install; then
        apt_install "${missing[@]}"
    else
        log "missing system tools: ${missing[*]} (the embedded mini recipe synthesises its corpus with espeak-ng)"
        log "install them first, e.g. 'sudo apt-get install ${missing[*]}'"
        return 1
    fi
}

# The daemons and clients of a one-node Slurm cluster (tests/utils/_slurm.py starts one); not
# having them only makes the slurm tests skip, so this never fails the installation.
check_slurm() {
    local tool missing=()
    for tool in munged slurmctld slurmd sbatch srun salloc sinfo squeue scancel scontrol; do
        PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if can_apt_install; then
        apt_install slurm-wlm munge || log "--with-slurm: apt-get could not install slurm-wlm and munge: the slurm tests will skip"
    else
        log "--with-slurm: not installing Slurm (${missing[*]} missing; needs root and apt-get): the slurm tests will skip"
    fi
}

# Headless Chromium and its WebDriver for the results-page test (selenium is in requirements.txt);
# asked for explicitly, so failing to install them is an error.
check_browser() {
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && return 0
    if can_apt_install; then
        apt_install chromium chromium-driver
    else
        log "--with-browser: chromium and chromedriver are missing; install them as root: apt-get install chromium chromium-driver"
        return 1
    fi
}

# pip, minus the notes this machine's pip configuration prints for every package; keeps pip's status.
pip_quiet() {
    local status
    set +o pipefail
    "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" >&2 || true; }
    status=${PIPESTATUS[0]}
    set -o pipefail
    return "$status"
}

build_deps() {
    local start tmp pip
    start=$(date +%s)
    tmp="$deps.partial.$$"
    log "building the dependency environment $deps (torch with its CUDA libraries: about 7 GB, a few minutes)"
    mkdir -p "$(dirname "$deps")"
    rm -rf "$tmp"
    "$python" -m venv "$tmp"
    pip=("$tmp/bin/python" -m pip --no-cache-dir --disable-pip-version-check -q)
    pip_quiet "${pip[@]}" install --upgrade pip
    # pyworld compiles against the venv's numpy and imports pkg_resources (setuptools<81).
    pip_quiet "${pip[@]}" install "$(grep '^setuptools==' "$req")" "$(grep '^numpy==' "$req")" cython wheel
    pip_quiet "${pip[@]}" install --no-build-isolation "$(grep '^pyworld==' "$req")"
    pip_quiet "${pip[@]}" install -r "$req"
    "$tmp/bin/python" -W ignore -c 'import torch, torchaudio, pyworld, kaldiio, soundfile, sklearn, speechbrain, tensorboard'
    # a venv records its own path: build it at the final path's name, then rename atomically
    grep -rlF "$tmp" "$tmp/bin" "$tmp/pyvenv.cfg" 2>/dev/null | xargs -r sed -i "s|$tmp|$deps|g"
    rm -rf "$deps"
    mv "$tmp" "$deps"
    log "dependency environment built in $(( $(date +%s) - start )) s ($(du -sh "$deps" | cut -f1))"
}

build_venv() {
    local f name
    rm -rf "$venv"
    "$python" -m venv "$venv"
    echo "import site; site.addsitedir('$deps/$site_rel')" > "$venv/$site_rel/_cdsvae_deps.pth"
    # entry points of the dependencies (torchrun, tensorboard), run by this venv's python
    for f in "$deps"/bin/*; do
        name=$(basename "$f")
        [ -e "$venv/bin/$name" ] && continue
        head -c 2 "$f" | grep -q '#!' || continue
        head -n 1 "$f" | grep -q "^#!$deps/bin/python" || continue
        { echo "#!$venv/bin/python"; tail -n +2 "$f"; } > "$venv/bin/$name"
        chmod +x "$venv/bin/$name"
    done
    "$venv/bin/python" -m pip --no-cache-dir --disable-pip-version-check -q \
        install --no-deps --no-build-isolation -e "$root"
    venv_stamp > "$venv/.cdsvae-deps"
}

# The venv depends on the dependency environment and on setup.py (entry points).
venv_stamp() {
    echo "$deps $(sha256sum < "$root/setup.py" | cut -c1-12)"
}

check_system_tools
[ "$with_slurm" = false ] || check_slurm
[ "$with_browser" = false ] || check_browser
[ -x "$deps/bin/python" ] || build_deps
if [ ! -f "$venv/.cdsvae-deps" ] || [ "$(cat "$venv/.cdsvae-deps")" != "$(venv_stamp)" ] \
        || ! "$venv/bin/python" -c 'import cdsvae, torch' >/dev/null 2>&1; then
    build_venv
fi
log "environment ready: $venv (dependencies: $deps)"
