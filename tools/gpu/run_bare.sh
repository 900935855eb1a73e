#!/usr/bin/env bash
# The one command for a bare GPU machine: Python 3.12 with torch 2.11 (CUDA)
# and numpy / OpenCV / matplotlib / scipy, but no mmcv, mmengine or mmseg,
# and no network. Everything else comes in .gpu_bundle/, gathered on the CPU
# machine by tools/gpu/gather_bundle.sh and sent along with the working tree.
#
#   device tool: command "bash tools/gpu/run_bare.sh", carry [".gpu_bundle"],
#                timeout_s 600 (expected: about 5-6 minutes)
#
# Steps, each timed:
#  1. install the bundle's wheels with pip --no-index --no-deps into a target
#     folder (nothing in the machine's Python changes), put it on PYTHONPATH
#     behind the repository root (mmseg_pat comes from the working tree);
#  2. check `import mmcv.ops, mmengine, mmseg, mmseg.models, mmseg_pat`; if
#     only mmcv.ops fails (the prebuilt .so does not load there), rebuild
#     mmcv from the bundle's source archive on that machine's cores (CPU ops,
#     about 2-4 minutes on 16 cores) and check again;
#  3. bash benchmarks/gpu_check.sh (tables into $OUT, or
#     work_dirs/gpu_check/out when OUT is unset), within what is left of a
#     540 s budget so that the table is printed before the 600 s limit.
# The full log is written to $OUT/run_bare.log as well (it comes back).
#
# Env: PYTHON (default python3), GPU_BUNDLE (default .gpu_bundle), GPU_SITE
# (install target, default /tmp/mmseg_pat_site), RUN_BUDGET_S (540), and
# gpu_check.sh's own (ITERS as the first argument, FORCE_CPU_REHEARSAL, ...).
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/../.."
REPO=$(pwd)
RESULTS=${OUT:-$REPO/work_dirs/gpu_check/out}
mkdir -p "$RESULTS"
# Log everything to $RESULTS too: re-run this script under tee once, keeping
# its exit status.
if [ -z "${_RUN_BARE_TEED:-}" ]; then
  set +e
  _RUN_BARE_TEED=1 bash "$SELF" "$@" 2>&1 | tee "$RESULTS/run_bare.log"
  rc=${PIPESTATUS[0]}
  exit "$rc"
fi

PY=${PYTHON:-python3}
BUNDLE=${GPU_BUNDLE:-.gpu_bundle}
SITE=${GPU_SITE:-/tmp/mmseg_pat_site}
BUDGET=${RUN_BUDGET_S:-540}
export PYTHONUNBUFFERED=1
START=$(date +%s.%N)

say() { printf '[run_bare] %s\n' "$*"; }
die() { printf '[run_bare] ERROR: %s\n' "$*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
TIMES=()
mark() { TIMES+=("$1 $(since "$2") s"); say "$1: $(since "$2") s"; }

# --- 0. what this machine is ----------------------------------------------
T=$(now)
[ -d "$BUNDLE/wheels" ] || die "no $BUNDLE/wheels here: gather it with tools/gpu/gather_bundle.sh and name \"$BUNDLE\" in the device tool's carry"
"$PY" - <<'PY' || die "$PY cannot import torch"
import os, platform, shutil, sys, sysconfig
import torch
cuda = torch.cuda.is_available()
print(f'[run_bare] Python {platform.python_version()} ({sys.executable}), '
      f'torch {torch.__version__}, CUDA available: {cuda}'
      + (f', {torch.cuda.get_device_name(0)}' if cuda else '')
      + f', {os.cpu_count()} CPUs, {platform.libc_ver()[0]} {platform.libc_ver()[1]}')
# Whether a fallback build of mmcv could run here (compiler, Python headers).
header = os.path.join(sysconfig.get_paths()['include'], 'Python.h')
tools = {t: bool(shutil.which(t)) for t in ('g++', 'nvcc', 'ninja')}
print(f'[run_bare] build tools: {tools}, Python.h: {os.path.isfile(header)}')
PY
du -sh "$BUNDLE" | sed 's/^/[run_bare] bundle: /'
mark "preflight" "$T"

# --- 1. install from the bundle only -----------------------------------------
# --target: the machine's own site-packages stay untouched; --no-deps: the
# bundle names every package it needs (torch, numpy, OpenCV are the
# machine's; mmengine asks for opencv-python where the machine has
# opencv-python-headless).
T=$(now)
rm -rf "$SITE"
if "$PY" -m pip --version >/dev/null 2>&1; then
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps \
    --no-compile --no-cache-dir --target "$SITE" "$BUNDLE"/wheels/*.whl \
    || die "pip could not install the bundle's wheels into $SITE"
else
  # No pip there: a wheel is a zip laid out for site-packages; unpacking
  # is all an install into a bare folder needs (no scripts are used).
  say "no pip for $PY; unpacking the wheels into $SITE"
  "$PY" - "$SITE" "$BUNDLE"/wheels/*.whl <<'PY' || die "could not unpack the wheels into $SITE"
import sys, zipfile
for wheel in sys.argv[2:]:
    zipfile.ZipFile(wheel).extractall(sys.argv[1])
PY
fi
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"
mark "install" "$T"

# --- 2. import check, with a fallback build of mmcv --------------------------
T=$(now)
IMPORTS='import mmcv, mmcv.ops, mmengine, mmseg, mmseg.models, mmseg_pat, torch; print("[run_bare] imports ok: mmcv", mmcv.__version__, "(ops)", "mmengine", mmengine.__version__, "mmseg", mmseg.__version__, "mmseg_pat", mmseg_pat.__file__)'
if ! "$PY" -c "$IMPORTS"; then
  if "$PY" -c 'import mmcv.ops' 2>/dev/null; then
    die "mmcv.ops imports but the rest does not (see above)"
  fi
  SDIST=$(ls "$BUNDLE"/src/mmcv-*.tar.gz 2>/dev/null | head -n 1 || true)
  [ -n "$SDIST" ] || die "the prebuilt mmcv does not import and the bundle has no source archive"
  say "the prebuilt mmcv wheel does not import here; building mmcv from $SDIST on $(nproc) cores"
  TB=$(now)
  BUILD=$(mktemp -d)
  tar -xzf "$SDIST" -C "$BUILD"
  SRC=$(ls -d "$BUILD"/mmcv-*/)
  for p in "$BUNDLE"/src/*.patch; do
    [ -f "$p" ] || continue
    patch -d "$SRC" -p1 --forward <"$p"
  done
  # CPU ops, as the prebuilt wheel: hide the GPU from mmcv's setup.py, which
  # would otherwise compile every CUDA kernel (far longer). The bundle's
  # setuptools (< 81, with pkg_resources) and ninja are on the paths above.
  if ! (cd "$SRC" && CUDA_VISIBLE_DEVICES='' FORCE_CUDA=0 MMCV_WITH_OPS=1 \
        MAX_JOBS=$(nproc) timeout 360 "$PY" -m pip wheel -q --disable-pip-version-check \
        --no-build-isolation --no-deps --no-index . -w "$BUILD/dist" >"$BUILD/build.log" 2>&1); then
    tail -n 30 "$BUILD/build.log"
    die "the fallback build of mmcv failed"
  fi
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps \
    --no-compile --upgrade --target "$SITE" "$BUILD"/dist/mmcv-*.whl
  mark "fallback mmcv build" "$TB"
  "$PY" -c "$IMPORTS" || die "imports fail even with mmcv built here"
fi
mark "import check" "$T"

# --- 3. the check itself -------------------------------------------------------
T=$(now)
LEFT=$(awk -v a="$START" -v b="$(now)" -v t="$BUDGET" 'BEGIN { printf "%d", t - (b - a) }')
rc=0
PYTHON=$PY OUT=$RESULTS GPU_CHECK_BUDGET_S=${GPU_CHECK_BUDGET_S:-$LEFT} \
  bash benchmarks/gpu_check.sh "$@" || rc=$?
mark "gpu_check.sh" "$T"
TIMES+=("total $(since "$START") s")
say "times: $(IFS=';'; echo "${TIMES[*]}" | sed 's/;/; /g')"
exit "$rc"
