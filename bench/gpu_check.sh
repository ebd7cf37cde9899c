#!/usr/bin/env bash
# One prepared check of the GPU path, for a GPU lent for a few minutes: at most 6 minutes on one
# GPU, no network. It ends with ONE table, a row per check with pass/fail and its figure, and
# exits non-zero when any row is not "pass".
#
#   bench/gpu_check.sh 2>&1 | tee gpu_check.log     on a machine with one CUDA GPU
#   bench/gpu_check.sh --dry-run                    the same checks on the CPU at tiny sizes
#   bench/gpu_check.sh --parts "versions recipe"    some parts only
#
# Parts (each runs even when an earlier one failed, under its own time limit and the 8-minute
# budget, both doubled in a dry run; its full log goes to OUTDIR/<part>.log). A preflight first
# checks the Python version and that torch, pytest and tensorboard import, naming what is missing:
#   versions     torch, the CUDA it was built with, the NCCL version, the device name, cuDNN and
#                bf16 support (torch.version.cuda, torch.cuda.nccl.version(), get_device_name).
#   gpu_tests    pytest -m gpu over the test files that declare gpu tests (tests/train/test_gpu.py):
#                one row per test, with what it measured, through the real task and trainer
#                (cdsvae.experiment.run.build_trainer on synthetic data, speech and video models):
#                - a one-process NCCL DDP run equals the plain run: parameters after two steps
#                  within 1e-6;
#                - bf16 and fp16 autocast: loss and every term at step 1 and at validation
#                  within 3% of fp32 (0.03 absolute for terms near zero);
#                - torch.compile (inductor): loss, terms and gradient norm of two steps within
#                  1e-3 relative of eager, parameters within 2 x lr x steps;
#                - eval/train: a trained model in eval mode reconstructs no worse than 1.25 times
#                  train mode (fp32 and bf16), lagging running averages are caught, and the
#                  trainer's own check stays under its limit (cdsvae/train/monitor.py);
#                - a conv64 run checkpointed with contiguous weights resumes channels-last with
#                  the fused Adam kernel; the swap protocols' CPU generator draws for a model on
#                  the GPU.
#   ddp          two processes (torchrun, NCCL, one GPU each) train the toy model of
#                tests/train/_toy.py with batch 4 each and are compared with one process with
#                batch 8: parameters within 1e-4. On a machine with one GPU the row says
#                "not tested (1 GPU)" (result n/a, which does not fail the check).
#   throughput_sprites, throughput_timit
#                bench/throughput.py --device cuda --compile at the Sprites size (B=128, T=8,
#                3x64x64) and at the size of egs/timit/cdsvae1/conf/train.yaml: sequences/s and
#                peak GPU memory of fp32, bf16 autocast, fp16 autocast (GradScaler) and bf16 +
#                torch.compile (one fresh process each, 20 steps, the first 2 dropped as warm-up).
#   recipe       the mini recipe (egs/mini/cdsvae1) in a temporary copy of the tree, stage by
#                stage with --ngpu 1, --nj $(nproc), at the tiny sizes of tests/egs/test_recipes.py
#                (10 speakers, 4 training steps, C-DSVAE only) with the judges on (tiny judges,
#                gates off), so stage 5 trains both judges and stage 6 runs the CTC probes and the
#                judged swaps on the GPU: one row per stage with its wall time, then the EER row (stage 6's
#                exp/cdsvae/score_test/results.json; exp/RESULTS.md is printed and kept as
#                OUTDIR/recipe_RESULTS.md). It needs what stages 1-3 need: espeak-ng, kaldiio,
#                soundfile, pyworld, torchaudio's Kaldi features; a missing one fails the part at
#                once, naming it (--wheels DIR installs carried wheels first).
#
# Reading the table: "pass" rows held; "fail" rows name the figure that broke or the log to read;
# a "skip" row did not run (a pytest skip, or a stage after a failed one) and also fails the
# check. Figures of a dry run are not measurements: they only show that every path runs.
#
# --dry-run runs every part on the CPU with tiny sizes (CDSVAE_GPU_DRY_RUN=1 for the gpu tests:
# gloo for NCCL, CPU bf16 autocast, torch.compile's aot_eager backend, since inductor takes over a
# minute per model to compile on a 2-core CPU; throughput.py --dry_run; the recipe at the tiny
# settings of tests/egs/test_recipes.py with --ngpu 0). tests/bench/test_gpu_check.py runs it in
# CI, so this script cannot rot where there is no GPU. Without --dry-run and without CUDA it fails
# at once with one line.
#
# Python: tools/venv/bin/python when it exists, else ${PYTHON:-python3}, with PYTHONPATH at the
# repository root (a GPU machine may have torch installed and no tools/venv). Logs go to
# OUTDIR = $OUT when set, else bench/gpu_check_out/ (ignored by git); at most 9 files.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
all_parts="versions gpu_tests ddp throughput_sprites throughput_timit recipe"
budget_s=360  # the whole check on a GPU; doubled in a dry run

usage() {
    sed -n '2,/^set -uo pipefail/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    echo "Options: --dry-run | --parts \"${all_parts}\" | --wheels DIR | --help"
}

dry_run=false
parts=${all_parts}
wheels=
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=true ;;
        --parts) [ $# -ge 2 ] || { echo "gpu_check.sh: --parts needs a value" >&2; exit 2; }; parts=$2; shift ;;
        --wheels) [ $# -ge 2 ] || { echo "gpu_check.sh: --wheels needs a directory" >&2; exit 2; }; wheels=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (options: --dry-run, --parts, --wheels, --help)" >&2; exit 2 ;;
    esac
    shift
done
for p in ${parts}; do
    [[ " ${all_parts} " == *" ${p} "* ]] || { echo "gpu_check.sh: unknown part '${p}' (parts: ${all_parts})" >&2; exit 2; }
done

if [ -x "${repo}/tools/venv/bin/python" ]; then
    py=${repo}/tools/venv/bin/python
else
    py=${PYTHON:-python3}
fi
py=$(command -v "${py}" || echo "${py}")
export PYTHONPATH="${repo}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONUNBUFFERED=1

# Preflight: what every part needs, each missing piece named as what it is.
preflight=$("${py}" - "${dry_run}" 2>&1 <<'PY'
import importlib, sys
if sys.version_info[:2] != (3, 11):
    print(f"Python 3.11 is needed, {sys.executable} is {sys.version.split()[0]} (set PYTHON=/path/to/python3.11)")
    sys.exit(1)
missing = []
for name in ("torch", "pytest", "tensorboard", "yaml", "numpy"):
    try:
        importlib.import_module(name)
    except Exception as e:
        missing.append(f"{name} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
if missing:
    print(f"{sys.executable} cannot import {', '.join(missing)}; tools/install.sh installs them "
          "(or pip install -r tools/requirements.txt)")
    sys.exit(1)
import torch
if sys.argv[1] != "true" and not torch.cuda.is_available():
    print(f"no CUDA device visible to {sys.executable} (torch {torch.__version__}, built with CUDA "
          f"{torch.version.cuda}: torch.cuda.is_available() is False); bench/gpu_check.sh --dry-run rehearses "
          "the check on the CPU")
    sys.exit(1)
PY
) || { echo "gpu_check.sh: $(printf '%s\n' "${preflight}" | tail -n 1)" >&2; exit 1; }

out=${OUT:-${repo}/bench/gpu_check_out}
mkdir -p "${out}" || exit 1
out=$(cd "${out}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 1
trap 'rm -rf "${work}"' EXIT
nproc=$(nproc 2>/dev/null || echo 4)
# The time limits below are for a GPU lease; a dry run doubles them (a shared CI machine can be slow).
scale=1
if ${dry_run}; then
    export CDSVAE_GPU_DRY_RUN=1
    # One thread per process: on a loaded 2-core machine two threads wait on each other for minutes.
    export OMP_NUM_THREADS=1
    mode="dry run on the CPU (tiny sizes; the figures are not measurements)"
    scale=2
else
    unset CDSVAE_GPU_DRY_RUN
    mode="GPU"
fi
budget_s=$((budget_s * scale))
start=${SECONDS}
deadline=$((start + budget_s))

if [ -n "${wheels}" ]; then
    echo "== installing the wheels of ${wheels} into ${work}/site (offline)"
    if "${py}" -m pip install -q --no-index --no-deps --no-compile --target "${work}/site" "${wheels}"/*.whl \
        >"${work}/pip.log" 2>&1; then
        export PYTHONPATH="${work}/site:${PYTHONPATH}"
    else
        echo "gpu_check.sh: installing the wheels of ${wheels} failed: $(tail -n 1 "${work}/pip.log")" >&2
    fi
fi

rows=()  # "name<TAB>result<TAB>figure"
logs=()
add_row() {  # add_row <name> <pass|fail|skip> <figure>
    rows+=("$1"$'\t'"$2"$'\t'"$3")
}

# Time limits (s) of each part: the most it may take, and the least kept for it while the parts
# before it run (so a slow part cannot starve the ones after it).
declare -A part_cap=([versions]=30 [gpu_tests]=120 [ddp]=60 [throughput_sprites]=60 [throughput_timit]=60 [recipe]=180)
declare -A part_floor=([versions]=10 [gpu_tests]=60 [ddp]=20 [throughput_sprites]=30 [throughput_timit]=30 [recipe]=120)
reserve=0  # the floors of the parts still to come

# Seconds a part may run: its cap, or what is left of the budget after the reserve.
time_for() {  # time_for <part>
    local cap=$((part_cap[$1] * scale)) left=$((deadline - SECONDS - reserve))
    [ "${left}" -lt "${cap}" ] && echo "${left}" || echo "${cap}"
}

# Runs a command into a log under a time limit; a failure injected through
# CDSVAE_GPU_CHECK_FAIL="<part> ..." (how tests check that a failing part fails the check) replaces it.
run_logged() {  # run_logged <part> <limit_s> <log> <command...>
    local part=$1 limit=$2 log=$3
    shift 3
    if [[ " ${CDSVAE_GPU_CHECK_FAIL:-} " == *" ${part} "* ]]; then
        echo "failure injected by CDSVAE_GPU_CHECK_FAIL=${CDSVAE_GPU_CHECK_FAIL}" >>"${log}"
        return 1
    fi
    if [ "${limit}" -lt 5 ]; then
        echo "not run: the ${budget_s} s budget of the check is spent" >>"${log}"
        return 124
    fi
    timeout -k 10 "${limit}" "$@" >>"${log}" 2>&1
}

# The last line of a log, for a failed row's figure.
last_line() {
    grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-160
}

why_failed() {  # why_failed <rc> <log>
    if [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; then
        echo "timed out; see $2"
    else
        echo "exit $1: $(last_line "$2")"
    fi
}

# Figures from the files the parts write: prints "name<TAB>result<TAB>figure" rows.
summarise() {  # summarise <kind> <file> [args]
    "${py}" - "$@" <<'PY'
import json, math, sys
import xml.etree.ElementTree as ET

kind, path, *rest = sys.argv[1:]

def row(name, ok, figure):
    print(f"{name}\t{ok}\t{figure}")

if kind == "junit":
    cases = list(ET.parse(path).iter("testcase"))
    if not cases:
        row("gpu tests: collected", "fail", "no test ran")
    for tc in cases:
        children = {c.tag for c in tc}
        result = "fail" if children & {"failure", "error"} else "skip" if "skipped" in children else "pass"
        figure = "; ".join(f"{p.get('name')} {p.get('value')}" for p in tc.iter("property"))
        if result == "skip":
            figure = next(c.get("message", "") for c in tc if c.tag == "skipped")
        elif result == "fail":
            bad = next(c for c in tc if c.tag in ("failure", "error"))
            figure = (bad.get("message") or "").splitlines()[0][:160] if bad.get("message") else "see the log"
        row(f"gpu test {tc.get('name').removeprefix('test_')}", result, f"{figure} ({float(tc.get('time', 0)):.1f} s)")
elif kind == "throughput":
    size, stopped = rest[0], rest[1] if len(rest) > 1 else ""
    parts = []
    for r in json.load(open(path)):
        mem = f", {r['peak_bytes'] / 2**30:.2f} GiB" if r["peak_bytes"] is not None else ""
        name = r["variant"].replace(" (baseline)", "").replace(" autocast", "")
        ratio = "" if r["ratio"] == 1.0 else f" ({r['ratio']:.2f}x)"
        parts.append(f"{name} {r['seq_per_s']:.0f} seq/s{mem}{ratio}")
    ok = all(math.isfinite(r["seq_per_s"]) and r["seq_per_s"] > 0 for r in json.load(open(path)))
    if stopped:
        parts.append(f"then {stopped}")
    row(f"throughput {size}", "pass" if ok and not stopped else "fail", "; ".join(parts))
elif kind == "eer":
    r = json.load(open(path))
    eers = [r["s"]["eer"], r["z"]["eer"], r["mean_norm"]["s"]["eer"], r["mean_norm"]["z"]["eer"]]
    ok = all(math.isfinite(e) and 0.0 <= e <= 1.0 for e in eers)
    row("recipe EER (C-DSVAE, test)", "pass" if ok else "fail",
        f"s {100 * eers[0]:.2f} %, z {100 * eers[1]:.2f} % (mean-normalised: s {100 * eers[2]:.2f} %, "
        f"z {100 * eers[3]:.2f} %); {r['n_target']} target / {r['n_nontarget']} nontarget trials")
PY
}

# Adds the rows summarise prints, or one failed row when it cannot read the file.
add_summary() {  # add_summary <row name if unreadable> <kind> <file> [args]
    local name=$1 lines
    shift
    if lines=$(summarise "$@" 2>"${work}/summarise.err") && [ -n "${lines}" ]; then
        while IFS= read -r line; do rows+=("${line}"); done <<<"${lines}"
    else
        add_row "${name}" fail "could not read $2: $(tail -n 1 "${work}/summarise.err")"
    fi
}

# The row a part's script printed as "FIGURE<TAB>result<TAB>figure" (its last such line), or a
# failed row naming why when the script failed or printed none.
figure_row() {  # figure_row <row name> <exit status> <log>
    local figure
    figure=$(grep '^FIGURE' "$3" | tail -n 1)
    if [ "$2" -eq 0 ] && [ -n "${figure}" ]; then
        rows+=("$1${figure#FIGURE}")
    else
        add_row "$1" fail "$(why_failed "$2" "$3")"
    fi
}

part_versions() {
    local log=${out}/versions.log
    logs+=("${log}")
    : >"${log}"
    run_logged versions "$(time_for versions)" "${log}" "${py}" - "${dry_run}" <<'PY'
import platform, sys
import torch
import torch.distributed as dist

dry = sys.argv[1] == "true"
print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "built with CUDA", torch.version.cuda)
try:
    v = torch.cuda.nccl.version()  # a tuple; an int such as 2708 in older releases
    nccl = ".".join(str(n) for n in v) if isinstance(v, tuple) else str(v)
except Exception as e:  # a CPU-only build has none
    nccl = f"none ({type(e).__name__})"
print("NCCL", nccl, "| nccl backend", dist.is_nccl_available(), "| gloo backend", dist.is_gloo_available())
print("cuDNN", torch.backends.cudnn.version())
if dry:
    ok = dist.is_gloo_available()
    print(f"FIGURE\t{'pass' if ok else 'fail'}\ttorch {torch.__version__}, built with CUDA {torch.version.cuda}, "
          f"NCCL {nccl}; no GPU used (dry run)")
else:
    dev = torch.cuda.get_device_properties(0)
    bf16 = torch.cuda.is_bf16_supported()
    print("device", torch.cuda.get_device_name(0), f"sm_{dev.major}{dev.minor}", f"{dev.total_memory / 2**30:.0f} GiB",
          "| devices", torch.cuda.device_count(), "| bf16", bf16)
    ok = dist.is_nccl_available() and not nccl.startswith("none") and bf16
    print(f"FIGURE\t{'pass' if ok else 'fail'}\ttorch {torch.__version__}, CUDA {torch.version.cuda}, NCCL {nccl}, "
          f"cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)} "
          f"({dev.total_memory / 2**30:.0f} GiB, bf16 {bf16})")
PY
    figure_row versions $? "${log}"
}

part_gpu_tests() {
    local log=${out}/gpu_tests.log xml=${out}/gpu_tests.xml files rc
    logs+=("${log}" "${xml}")
    : >"${log}"
    rm -f "${xml}"
    mapfile -t files < <(cd "${repo}" && grep -rl --include='test_*.py' 'pytest.mark.gpu' tests | sort)
    if [ "${#files[@]}" -eq 0 ]; then
        add_row "gpu tests" fail "no test file under tests/ declares pytest.mark.gpu"
        return
    fi
    (cd "${repo}" && run_logged gpu_tests "$(time_for gpu_tests)" "${log}" "${py}" -m pytest -q -rs -p no:cacheprovider \
        -m gpu -o junit_family=xunit1 --junitxml="${xml}" "${files[@]}")
    rc=$?
    local tally
    tally=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)' "${log}" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')
    if [ "${rc}" -eq 0 ]; then
        add_row "gpu tests (pytest -m gpu)" pass "${tally}"
    else
        add_row "gpu tests (pytest -m gpu)" fail "${tally:-$(why_failed "${rc}" "${log}")}"
    fi
    [ -f "${xml}" ] && add_summary "gpu tests: results" junit "${xml}"
}

part_throughput() {  # part_throughput <sprites|timit>
    local size=$1 log=${out}/throughput_$1.log json=${work}/throughput_$1.json rc
    local args=(--device cuda --size "${size}" --json "${json}")
    # torch.compile only at the Sprites size (convolutions), where it may pay: compiling takes most
    # of a part's minute.
    [ "${size}" != sprites ] || args+=(--compile)
    logs+=("${log}")
    : >"${log}"
    if ${dry_run}; then
        args+=(--dry_run --compile_backend aot_eager)
    else
        args+=(--steps 15 --repeats 1)
    fi
    run_logged "throughput_${size}" "$(time_for "throughput_${size}")" "${log}" "${py}" "${repo}/bench/throughput.py" "${args[@]}"
    rc=$?
    if [ "${rc}" -eq 0 ]; then
        add_summary "throughput ${size}" throughput "${json}" "${size}"
    elif [ -s "${json}" ]; then  # the variants measured before it stopped
        add_summary "throughput ${size}" throughput "${json}" "${size}" "$(why_failed "${rc}" "${log}")"
    else
        add_row "throughput ${size}" fail "$(why_failed "${rc}" "${log}")"
    fi
}

# Two NCCL processes against one (the toy of tests/train/_toy.py): where there are 2 GPUs, or on
# the CPU with gloo in a dry run.
part_ddp() {
    local log=${out}/ddp.log n device=cuda
    logs+=("${log}")
    : >"${log}"
    if ${dry_run}; then
        device=cpu
    else
        n=$("${py}" -c 'import torch; print(torch.cuda.device_count())' 2>>"${log}" | tail -n 1)
        if [ "${n:-0}" -lt 2 ]; then
            add_row "ddp: 2 processes vs 1" n/a "not tested (${n:-0} GPU)"
            return
        fi
    fi
    local toy=("${repo}/tests/train/_toy.py" --num_train 32 --epochs 1 --schedule constant --device "${device}")
    local part_deadline=$((SECONDS + $(time_for ddp)))
    run_logged ddp "$((part_deadline - SECONDS))" "${log}" "${py}" "${toy[@]}" --outdir "${work}/ddp_one" --batch_size 8 \
        && run_logged ddp "$((part_deadline - SECONDS))" "${log}" "${py}" -m torch.distributed.run --standalone \
            --nproc_per_node 2 "${toy[@]}" --outdir "${work}/ddp_two" --batch_size 4 \
        && run_logged ddp "$((part_deadline - SECONDS))" "${log}" "${py}" - "${work}" <<'PY'
import sys
from pathlib import Path

from cdsvae import checkpoint as ckpt

work = Path(sys.argv[1])
one, two = (ckpt.load_latest(work / d / "checkpoints")[1] for d in ("ddp_one", "ddp_two"))
log = (work / "ddp_two" / "train.log").read_text()
backend = "nccl" if "(nccl)" in log else "gloo" if "(gloo)" in log else "unknown backend"
diff = max(float((one["model"][k] - two["model"][k]).abs().max()) for k in one["model"])
ok = two["world_size"] == 2 and one["progress"] == two["progress"] and diff <= 1e-4
result = "pass" if ok else "fail"
print(f"FIGURE\t{result}\tmax |param diff| {diff:.2e} (limit 1e-4), {backend}, world size {two['world_size']}")
PY
    figure_row "ddp: 2 processes vs 1" $? "${log}"
}

# What stages 1-3 of the mini recipe need beyond torch; prints the missing ones.
recipe_missing() {
    command -v espeak-ng >/dev/null 2>&1 || echo "espeak-ng (a system package: apt-get install espeak-ng)"
    "${py}" - <<'PY'
import importlib
for name in ("yaml", "numpy", "scipy", "kaldiio", "soundfile", "pyworld", "sklearn", "matplotlib", "tqdm",
             "torchaudio.compliance.kaldi"):
    try:
        importlib.import_module(name)
    except Exception:
        print(name)
PY
}

# A copy of egs/mini/cdsvae1 in a tree that mirrors the repository (tools/venv, utils and the
# other recipes are links), as tests/egs/test_recipes.py builds it: the run writes nothing here.
recipe_tree() {  # recipe_tree <dir>; prints the recipe directory
    local tree=$1 entry
    mkdir -p "${tree}/tools" "${tree}/egs/mini/cdsvae1" || return 1
    [ ! -d "${repo}/tools/venv" ] || ln -s "${repo}/tools/venv" "${tree}/tools/venv"
    ln -s "${repo}/utils" "${tree}/utils"
    for entry in "${repo}"/egs/*; do
        [ "$(basename "${entry}")" = mini ] || ln -s "${entry}" "${tree}/egs/"
    done
    for entry in "${repo}"/egs/mini/cdsvae1/* "${repo}"/egs/mini/cdsvae1/.[!.]*; do
        [ -e "${entry}" ] || [ -L "${entry}" ] || continue
        case "$(basename "${entry}")" in data | dump | exp | corpus | downloads) continue ;; esac
        cp -a "${entry}" "${tree}/egs/mini/cdsvae1/" || return 1
    done
    echo "${tree}/egs/mini/cdsvae1"
}

part_recipe() {
    local log=${out}/recipe.log rdir missing n rc t0 t1 part_deadline failed=false
    local names=("" "data preparation" "features" "motion augmentation (WORLD VC)" "training" "extraction" "scoring" "report")
    logs+=("${log}" "${out}/recipe_RESULTS.md")
    : >"${log}"
    rm -f "${out}/recipe_RESULTS.md"
    missing=$(recipe_missing 2>>"${log}" | paste -sd, - | sed 's/,/, /g')
    if [ -n "${missing}" ]; then
        echo "missing for stages 1-3: ${missing}" >>"${log}"
        add_row "recipe: what stages 1-3 need" fail "missing: ${missing} (carry wheels: --wheels DIR)"
        return
    fi
    rdir=$(recipe_tree "${work}/tree") || { add_row "recipe: copy of egs/mini/cdsvae1" fail "could not copy it"; return; }
    # A `python` on PATH for the stages when there is no tools/venv: a wrapper, not a link, since a
    # venv's python found through a link elsewhere would not see the venv's packages.
    mkdir -p "${work}/bin" && printf '#!/bin/sh\nexec %q "$@"\n' "${py}" >"${work}/bin/python" \
        && chmod +x "${work}/bin/python"
    # The tiny judges of tests/egs/test_recipes.py, their gates off: a step on every judge path.
    cat >"${rdir}/conf/judges_tiny.yaml" <<'YAML'
speaker: {channels: [16, 16, 16, 16, 48], lin_neurons: 8, attention_channels: 8, se_channels: 8, epochs: 1,
          batch_size: 8, crop_frames: 50}
content: {hidden: 8, layers: 1, proj: 8, subsample: 2, epochs: 1, batch_size: 4}
probe: {hidden: 8, layers: 1, proj: 8, subsample: 2, epochs: 1, batch_size: 4}
swap: {n_pairs: 4, n_draws: 2}
YAML
    local opts=(--judge_conf conf/judges_tiny.yaml --train_configs conf/train.yaml
        --local_data_opts "--num_train_speakers 6 --num_dev_speakers 2 --num_test_speakers 2 --num_sx 2 --num_si 1 --test_num_sx 2 --test_num_si 1"
        --train_args "--train.epochs 1 --train.max_steps 4 --train.batch_size 16 --data.segments_per_utt 2")
    if ${dry_run}; then
        opts+=(--ngpu 0 --nj 2)
    else
        opts+=(--ngpu 1 --nj "${nproc}")
    fi
    echo "recipe copy: ${rdir}; options: ${opts[*]}" >>"${log}"
    part_deadline=$((SECONDS + $(time_for recipe)))
    for n in 1 2 3 4 5 6 7; do
        if ${failed}; then
            add_row "recipe stage ${n}: ${names[n]}" skip "not run: an earlier stage failed"
            continue
        fi
        echo "===== stage ${n}: ${names[n]}" >>"${log}"
        t0=$(date +%s.%N)
        (cd "${rdir}" && PATH="${work}/bin:${PATH}" run_logged recipe "$((part_deadline - SECONDS))" "${log}" \
            ./run.sh --stage "${n}" --stop_stage "${n}" "${opts[@]}")
        rc=$?
        t1=$(date +%s.%N)
        local took
        took=$(awk -v a="${t0}" -v b="${t1}" 'BEGIN { printf "%.1f s", b - a }')
        if [ "${rc}" -eq 0 ]; then
            add_row "recipe stage ${n}: ${names[n]}" pass "${took}"
        else
            add_row "recipe stage ${n}: ${names[n]}" fail "after ${took}: $(why_failed "${rc}" "${log}")"
            failed=true
        fi
    done
    ${failed} && return
    add_summary "recipe EER (C-DSVAE, test)" eer "${rdir}/exp/cdsvae/score_test/results.json"
    [ ! -f "${rdir}/exp/RESULTS.md" ] || cp "${rdir}/exp/RESULTS.md" "${out}/recipe_RESULTS.md"
}

echo "== bench/gpu_check.sh: ${mode}; parts: ${parts}; logs: ${out}/"
for p in ${parts}; do
    reserve=0
    after=false
    for q in ${parts}; do
        ! ${after} || reserve=$((reserve + part_floor[${q}] * scale))
        [ "${q}" != "${p}" ] || after=true
    done
    echo "== ${p} ($((SECONDS - start)) s of ${budget_s} s; at most $(time_for "${p}") s)"
    first=${#rows[@]}
    case "${p}" in
        versions) part_versions ;;
        gpu_tests) part_gpu_tests ;;
        ddp) part_ddp ;;
        throughput_sprites) part_throughput sprites ;;
        throughput_timit) part_throughput timit ;;
        recipe) part_recipe ;;
    esac
    for r in "${rows[@]:${first}}"; do
        IFS=$'\t' read -r name result figure <<<"${r}"
        echo "   ${result}: ${name}: ${figure}"
    done
    if [ "${p}" = recipe ] && [ -f "${out}/recipe_RESULTS.md" ]; then
        echo "   the mini recipe's exp/RESULTS.md (speaker verification):"
        sed -n '/^## Speaker verification/,/^## Checkpoints/p' "${out}/recipe_RESULTS.md" | sed '$d'
    fi
done

{
    echo
    echo "== gpu_check summary: ${mode}, $((SECONDS - start)) s"
    failed=0
    width=12
    for r in "${rows[@]}"; do
        name=${r%%$'\t'*}
        [ "${#name}" -le "${width}" ] || width=${#name}
    done
    printf "%-${width}s  %-6s  %s\n" "check" "result" "figure"
    for r in "${rows[@]}"; do
        IFS=$'\t' read -r name result figure <<<"${r}"
        printf "%-${width}s  %-6s  %s\n" "${name}" "${result}" "${figure}"
        [ "${result}" = pass ] || [ "${result}" = n/a ] || failed=$((failed + 1))
    done
    echo "logs:"
    for l in "${logs[@]}"; do
        [ ! -e "${l}" ] || echo "  ${l}"
    done
    if [ "${#rows[@]}" -eq 0 ]; then
        echo "RESULT: FAIL (no check ran)"
        failed=1
    elif [ "${failed}" -eq 0 ]; then
        echo "RESULT: pass (${#rows[@]} rows)"
    else
        echo "RESULT: FAIL (${failed} of ${#rows[@]} rows not pass)"
    fi
} | tee "${out}/summary.txt"
grep -q '^RESULT: pass' "${out}/summary.txt"
