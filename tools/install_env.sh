#!/usr/bin/env bash
# Install gslora_det and its pinned stack into a project virtual environment.
#
# Usage (from anywhere; paths are resolved relative to this repository):
#   bash tools/install_env.sh                  # venv at <repo>/.venv
#   VENV=/some/where bash tools/install_env.sh # venv elsewhere
#
# Steps: create the venv -> build tools -> torch/torchvision (pinned in
# requirements/runtime.txt) -> the other requirements -> mmcv 2.1.0 *with its
# compiled ops* -> `pip install -e . --no-deps --no-build-isolation`.
#
# mmcv 2.1.0 has no wheel for this torch on PyPI, so it is taken, in order, from:
#   1. the venv, if it already imports mmcv.ops and mmcv._ext at version 2.1.0;
#   2. $MMCV_WHEEL, a wheel file you point to (installed with --no-deps);
#   3. a local wheel cache, $GSLORA_WHEEL_CACHE (default
#      ${XDG_CACHE_HOME:-$HOME/.cache}/gslora_det/wheels), in a subfolder keyed by
#      the installed torch version and Python tag (e.g. torch-2.14.1+cu130-cp311/).
#      pip's own cache keys a build by its source only and may hand back a build
#      made against another torch (stale ABI), so the build never uses pip's cache;
#   4. a build from PyPI's sdist (~22 minutes on 2 cores (measured)), with -std=c++17
#      raised to -std=c++20 (torch 2.14's headers need C++20, open-mmlab/mmcv#3341);
#      the wheel is stored in the cache of step 3. It shows "i/N sources compiled"
#      with an ETA (compiler output: $VENV/.gslora_det_mmcv_build.log).
# Downloads of 10 MB or more show their progress every 10 %.
#
# Environment:
#   VENV                venv location (default: <repo>/.venv)
#   PYTHON              interpreter used to create the venv (default: python3)
#   MMCV_WHEEL          path to a prebuilt mmcv-2.1.0 wheel to try first
#   GSLORA_WHEEL_CACHE  wheel cache root (see above)
#   FORCE_CUDA=1        build mmcv's CUDA ops too (needs nvcc matching torch's CUDA);
#                       a build on a machine where torch sees a GPU includes them anyway.
#                       Default 0: CPU ops only.
#   MAX_JOBS            parallel compile jobs for the mmcv build (default: nproc)
#   TORCH_INDEX_URL     index for torch/torchvision, e.g. https://download.pytorch.org/whl/cu126
#                       (default: pip's configured index; PyPI's Linux wheels use CUDA 13.0)
#
# Re-running is cheap: a stamp in the venv records a hash of requirements/*.txt,
# setup.py and this script; when it matches and the import check passes, no pip
# command runs at all.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER_DIR="$PWD"
cd "$REPO_ROOT"

VENV="${VENV:-$REPO_ROOT/.venv}"
# A relative VENV (e.g. from the Makefile) is relative to where the script was
# called; make it absolute, since some steps run from inside the venv folder.
case "$VENV" in /*) ;; *) VENV="$CALLER_DIR/$VENV" ;; esac
PYTHON="${PYTHON:-python3}"
FORCE_CUDA="${FORCE_CUDA:-0}"
MMCV_VERSION=2.1.0
WHEEL_CACHE="${GSLORA_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gslora_det/wheels}"
STAMP="$VENV/.gslora_det_install.stamp"
CONSTRAINTS="$VENV/.gslora_det_constraints.txt"
PY="$VENV/bin/python"
START_SECONDS=$SECONDS
TMP_DIR=""

# ----------------------------------------------------------------------------- helpers
log()  { printf '[install_env %3ds] %s\n' "$((SECONDS - START_SECONDS))" "$*"; }
warn() { printf '[install_env] WARNING: %s\n' "$*" >&2; }
die()  { printf '[install_env] ERROR: %s\n' "$*" >&2; exit 1; }
# pip_filter, mmcv_source_count, mmcv_build_progress: the progress a person sees.
source "$REPO_ROOT/tools/install_progress.sh"

cleanup() { if [[ -n "$TMP_DIR" && -d "$TMP_DIR" ]]; then rm -rf "$TMP_DIR"; fi; }
trap cleanup EXIT

# pip through the venv's interpreter, through pip_filter; keeps pip's exit status
# (pipefail + `|| rc=$?`). pip's own bar draws nothing through a pipe: once pip knows
# `--progress-bar raw` (>= 24.1), pip_filter turns its "Progress" lines into percents.
PIP_PROGRESS=()
pip_run() {  # $1: pip command (install, download, wheel), then its arguments
    local rc=0 cmd="$1"
    shift
    "$PY" -m pip "$cmd" ${PIP_PROGRESS[@]+"${PIP_PROGRESS[@]}"} "$@" 2>&1 | pip_filter || rc=$?
    return "$rc"
}

# The pinned version of a package in requirements/runtime.txt (e.g. torch -> 2.14.1).
pinned_version() {
    local v
    v="$(sed -nE "s/^$1==([^[:space:]#;]+).*/\1/p" requirements/runtime.txt | head -n 1)"
    [[ -n "$v" ]] || die "no '$1==<version>' line in requirements/runtime.txt"
    printf '%s' "$v"
}

# Run Python from inside the venv folder so the repo checkout is not on sys.path:
# the checks then see what is installed, not the source tree.
venv_python() { (cd "$VENV" && "$PY" "$@"); }

install_hash() {  # FORCE_CUDA changes which mmcv build is wanted
    { cat requirements/*.txt setup.py tools/install_env.sh tools/install_progress.sh; echo "FORCE_CUDA=$FORCE_CUDA"; } \
        | sha256sum | cut -d' ' -f1
}

# Everything the project imports; gslora_det only once its package exists.
import_check() {
    venv_python - "$REPO_ROOT" "$TORCH_VERSION" "$TORCHVISION_VERSION" "$MMCV_VERSION" <<'PYEOF'
import os, sys
repo, torch_v, tv_v, mmcv_v = sys.argv[1:5]
import torch, torchvision, mmcv, mmengine, mmdet, timm, pycocotools, safetensors, matplotlib
from mmcv.ops import MultiScaleDeformableAttention, get_compiling_cuda_version  # noqa: F401
import mmcv._ext  # noqa: F401
if torch.cuda.is_available():
    assert get_compiling_cuda_version() != 'not available', 'mmcv ops lack CUDA on a GPU machine'
got = (torch.__version__.split('+')[0], torchvision.__version__.split('+')[0], mmcv.__version__)
assert got == (torch_v, tv_v, mmcv_v), f'versions {got} != {(torch_v, tv_v, mmcv_v)}'
if os.path.exists(os.path.join(repo, 'gslora_det', '__init__.py')):
    import gslora_det
    assert os.path.realpath(os.path.dirname(gslora_det.__file__)) == \
        os.path.realpath(os.path.join(repo, 'gslora_det')), gslora_det.__file__
PYEOF
}

# True if the venv's mmcv is $MMCV_VERSION with loadable compiled ops (and CUDA ops
# when they are wanted). Prints the reason when not.
mmcv_ok() {
    venv_python - "$MMCV_VERSION" "$WANT_CUDA" <<'PYEOF'
import sys
want_version, want_cuda = sys.argv[1], sys.argv[2] == '1'
try:
    import mmcv
    if mmcv.__version__ != want_version:
        sys.exit(f'mmcv {mmcv.__version__} is installed, {want_version} is required')
    from mmcv.ops import MultiScaleDeformableAttention, get_compiling_cuda_version  # noqa: F401
    import mmcv._ext  # noqa: F401
except Exception as e:  # ImportError, undefined symbol from a stale ABI, ...
    sys.exit(f'{type(e).__name__}: {e}')
if want_cuda and get_compiling_cuda_version() == 'not available':
    sys.exit('mmcv ops were built without CUDA, but CUDA ops are wanted')
PYEOF
}

install_mmcv_wheel() {  # $1: wheel file
    log "installing $1 (--no-deps)"
    pip_run install --no-deps --force-reinstall -c "$CONSTRAINTS" "$1"
}

build_mmcv_wheel() {  # $1: output folder
    local out="$1" src
    TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/gslora_mmcv.XXXXXX")"
    log "downloading the mmcv==$MMCV_VERSION source distribution from the package index"
    pip_run download --no-binary :all: --no-deps --no-build-isolation --no-cache-dir \
        -c "$CONSTRAINTS" -d "$TMP_DIR" "mmcv==$MMCV_VERSION" \
        || die "could not download the mmcv==$MMCV_VERSION sdist (is the package index reachable?)"
    tar -xzf "$TMP_DIR/mmcv-$MMCV_VERSION.tar.gz" -C "$TMP_DIR"
    src="$TMP_DIR/mmcv-$MMCV_VERSION"
    [[ -f "$src/setup.py" ]] || die "unexpected sdist layout: $src/setup.py missing"
    # torch >= 2.14 headers need C++20 (open-mmlab/mmcv#3341); mmcv 2.1.0 asks for C++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    grep -q -- '-std=c++20' "$src/setup.py" || die "patching mmcv's setup.py for C++20 failed"
    local jobs="${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)}" rc=0 t0=$SECONDS
    local build_log="$VENV/.gslora_det_mmcv_build.log" total
    total="$(mmcv_source_count "$src" "$WANT_CUDA")"
    log "compiling mmcv $MMCV_VERSION ops: $total sources (FORCE_CUDA=$FORCE_CUDA, CUDA ops:" \
        "$WANT_CUDA, MAX_JOBS=$jobs) -- ~22 minutes on 2 cores (measured); full output in $build_log"
    mkdir -p "$out"
    # -v: pip shows the build's output (ninja's [i/N] lines) as it comes.
    MMCV_WITH_OPS=1 FORCE_CUDA="$FORCE_CUDA" MAX_JOBS="$jobs" \
        "$PY" -m pip wheel -v --no-build-isolation --no-deps --no-cache-dir \
        -c "$CONSTRAINTS" -w "$out" "$src" 2>&1 | tee "$build_log" \
        | mmcv_build_progress "$total" || rc=$?
    if [[ "$rc" != 0 ]]; then
        tail -n 30 "$build_log" >&2
        die "building mmcv $MMCV_VERSION from source failed (the end of $build_log is above;" \
            "a C++20 compiler, e.g. g++ >= 10, is required)"
    fi
    log "mmcv built in $(( (SECONDS - t0 + 30) / 60 )) min"
    rm -rf "$TMP_DIR"
    TMP_DIR=""
}

# ----------------------------------------------------------------------------- main
TORCH_VERSION="$(pinned_version torch)"
TORCHVISION_VERSION="$(pinned_version torchvision)"

log "repository: $REPO_ROOT"
log "virtual environment: $VENV"

# 1. venv
if [[ ! -x "$PY" ]]; then
    command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found; set PYTHON to a Python >= 3.10"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$("$PYTHON" --version 2>&1) is too old; gslora_det needs Python >= 3.10"
    log "creating the virtual environment with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV" || die "could not create a venv at $VENV (is python3-venv installed?)"
fi
export PATH="$VENV/bin:$PATH"   # so the mmcv build finds the venv's ninja
export VIRTUAL_ENV="$VENV"

# 2. Fast path: nothing changed since the last successful run.
HASH="$(install_hash)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
    log "stamp matches; checking imports"
    if import_check >/dev/null 2>&1; then
        log "environment is up to date (nothing to do) in $((SECONDS - START_SECONDS))s"
        exit 0
    fi
    log "import check failed; reinstalling"
fi
rm -f "$STAMP"

# The torch pair, pinned for every pip call from here on.
printf 'torch==%s\ntorchvision==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" > "$CONSTRAINTS"

# 3. pip and build tools
log "upgrading pip"
pip_run install --upgrade pip
if venv_python -c "import sys, pip
sys.exit(tuple(map(int, pip.__version__.split('.')[:2])) < (24, 1))" 2>/dev/null; then
    PIP_PROGRESS=(--progress-bar raw)
fi
log "installing build tools (requirements/build.txt, torch excluded here)"
grep -vE '^[[:space:]]*(torch|torchvision)[[:space:]]*[=<>!~]' requirements/build.txt \
    > "$VENV/.gslora_det_build_tools.txt"
pip_run install -c "$CONSTRAINTS" -r "$VENV/.gslora_det_build_tools.txt"

# 4. torch / torchvision
if venv_python -c "import sys, torch, torchvision as tv; sys.exit(not (
        torch.__version__.split('+')[0] == '$TORCH_VERSION' and
        tv.__version__.split('+')[0] == '$TORCHVISION_VERSION'))" >/dev/null 2>&1; then
    log "torch $TORCH_VERSION / torchvision $TORCHVISION_VERSION already installed"
else
    log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
    pip_run install -c "$CONSTRAINTS" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
        "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi
read -r TORCH_FULL PYTAG TORCH_CUDA < <(venv_python -c "import sys, torch
print(torch.__version__, f'cp{sys.version_info[0]}{sys.version_info[1]}', int(torch.cuda.is_available()))") || true
[[ -n "${PYTAG:-}" ]] || die "torch does not import in $VENV after installing it"
WANT_CUDA=0
if [[ "$FORCE_CUDA" == 1 || "$TORCH_CUDA" == 1 ]]; then WANT_CUDA=1; fi
log "torch $TORCH_FULL, Python tag $PYTAG, mmcv CUDA ops wanted: $WANT_CUDA"

# 5. everything else except mmcv (mmcv's import needs mmengine, cv2, ...)
log "installing requirements/runtime.txt (without mmcv) and requirements/tests.txt"
grep -vE '^[[:space:]]*mmcv[[:space:]]*[=<>!~]' requirements/runtime.txt \
    > "$VENV/.gslora_det_runtime_no_mmcv.txt"
pip_run install -c "$CONSTRAINTS" -r "$VENV/.gslora_det_runtime_no_mmcv.txt" -r requirements/tests.txt

# 6. mmcv with ops
CACHE_SUBDIR="$WHEEL_CACHE/torch-$TORCH_FULL-$PYTAG"
if [[ "$WANT_CUDA" == 1 ]]; then CACHE_SUBDIR="$CACHE_SUBDIR-cuda"; fi
if reason="$(mmcv_ok 2>&1)"; then
    log "mmcv $MMCV_VERSION with compiled ops already installed; leaving it alone"
else
    log "mmcv needs installing: ${reason:-not importable}"
    done_mmcv=0
    if [[ -n "${MMCV_WHEEL:-}" ]]; then
        if [[ -f "$MMCV_WHEEL" ]]; then
            install_mmcv_wheel "$MMCV_WHEEL"
            if reason="$(mmcv_ok 2>&1)"; then done_mmcv=1
            else warn "MMCV_WHEEL=$MMCV_WHEEL does not work with this torch ($reason); trying the cache / a source build"
            fi
        else
            warn "MMCV_WHEEL=$MMCV_WHEEL is not a file; ignoring it"
        fi
    fi
    if [[ "$done_mmcv" == 0 ]]; then
        cached="$(ls -t "$CACHE_SUBDIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
        if [[ -n "$cached" ]]; then
            log "found a cached build for this torch: $cached"
            install_mmcv_wheel "$cached"
            if reason="$(mmcv_ok 2>&1)"; then done_mmcv=1
            else warn "cached wheel is unusable ($reason); removing it and rebuilding"; rm -f "$cached"
            fi
        else
            log "no cached mmcv build in $CACHE_SUBDIR"
        fi
    fi
    if [[ "$done_mmcv" == 0 ]]; then
        build_mmcv_wheel "$CACHE_SUBDIR"
        built="$(ls -t "$CACHE_SUBDIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
        [[ -n "$built" ]] || die "the mmcv build reported success but left no wheel in $CACHE_SUBDIR"
        log "built $built"
        install_mmcv_wheel "$built"
        reason="$(mmcv_ok 2>&1)" || die "mmcv $MMCV_VERSION was built and installed, but its ops do not" \
            "load: $reason. Delete $CACHE_SUBDIR and re-run; check the compiler output above."
    fi
    log "mmcv $MMCV_VERSION ops load"
fi

# 7. the full requirement set (mmcv now satisfied; adds any of its own missing deps)
log "checking requirements/runtime.txt and requirements/tests.txt"
pip_run install -c "$CONSTRAINTS" -r requirements/runtime.txt -r requirements/tests.txt

# 8. the project itself
log "installing gslora_det in editable mode"
pip_run install -c "$CONSTRAINTS" --no-deps --no-build-isolation -e "$REPO_ROOT"

# 9. verify and stamp
log "verifying imports"
import_check || die "the final import check failed (see the traceback above)"
printf '%s\n' "$HASH" > "$STAMP"
log "done in $((SECONDS - START_SECONDS))s; use $PY"
