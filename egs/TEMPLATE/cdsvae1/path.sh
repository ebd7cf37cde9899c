# The environment of every stage: sourced by cdsvae.sh (and local/*.sh) from a recipe
# directory egs/<corpus>/cdsvae1, so the repository root is three levels up.
MAIN_ROOT=$(cd "$PWD/../../.." && pwd)
export MAIN_ROOT

if [ -x "${MAIN_ROOT}/tools/venv/bin/python" ]; then
    export VIRTUAL_ENV="${MAIN_ROOT}/tools/venv"
    export PATH="${VIRTUAL_ENV}/bin:${PATH}"
else
    echo "path.sh: ${MAIN_ROOT}/tools/venv is missing: build it with ${MAIN_ROOT}/tools/install.sh (make test and make demo run it); using $(command -v python3 || echo 'no python')" >&2
fi
export PATH="${PWD}/utils:${PATH}"

# Byte-order sorting for Kaldi files; UTF-8 for Python's text I/O.
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1
# One thread per process: parallelism comes from --nj jobs and DDP processes.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
