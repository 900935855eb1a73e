#!/usr/bin/env bash
# Create or update the project's virtual environment with the pinned stack:
# torch 2.13.0 (CPU), mmengine 0.10.7, mmcv 2.1.0 with compiled ops,
# mmsegmentation 1.2.2, and this package in editable mode.
#
# PyPI has only mmcv's source archive: the compiled wheel is built once per
# machine and cached in $MMSEG_PAT_WHEEL_CACHE (default
# ~/.cache/mmseg-pat/wheels/<python>-torch<version>/). MMSEG_PAT_FIND_LINKS
# may name a folder with a prebuilt mmcv wheel for this Python and torch.
set -euo pipefail

VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
MMCV_VERSION=2.1.0
MMENGINE_VERSION=0.10.7
MMSEG_VERSION=1.2.2
OPENMIM_VERSION=0.3.9
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q)

say "installing build tools and torch==$TORCH_VERSION"
# setuptools < 81 keeps pkg_resources, which mmcv's build and mmengine's
# config loader (mmseg:: paths) import.
"${PIP[@]}" "setuptools>=77.0.3,<81" wheel ninja psutil
"${PIP[@]}" "torch==$TORCH_VERSION"

TAG=$("$PY" -c 'import sys, torch; print(f"cp{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__}")')
CACHE=${MMSEG_PAT_WHEEL_CACHE:-$HOME/.cache/mmseg-pat/wheels}/$TAG
mkdir -p "$CACHE"

mmcv_ops_ok() { "$PY" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "'$MMCV_VERSION'"' >/dev/null 2>&1; }

# Installs a wheel file with its dependencies (addict, yapf, opencv, ...).
install_mmcv_wheel() {
  "$PY" -m pip uninstall -y -q mmcv >/dev/null 2>&1 || true
  "${PIP[@]}" "$1"
}

# The build's process group (its own, see build_mmcv_wheel) and folder, to
# stop and remove them however this script ends.
BUILD_PID=
BUILD_DIR=
stop_build() {
  if [ -n "$BUILD_PID" ]; then
    kill -- "-$BUILD_PID" 2>/dev/null || true
    BUILD_PID=
  fi
  if [ -n "$BUILD_DIR" ]; then
    rm -rf "$BUILD_DIR"
    BUILD_DIR=
  fi
}
trap stop_build EXIT
trap 'stop_build; exit 130' INT TERM

# Builds the mmcv wheel into $CACHE, with a progress line every minute.
# pip's output goes to $CACHE/mmcv-build.log (ninja's [n/N] lines do not
# come through pip as they are made): the progress is the number of object
# files compiled so far in the build folder, out of the C++ sources of the
# CPU ops (77 for mmcv 2.1.0).
build_mmcv_wheel() {
  local log="$CACHE/mmcv-build.log" start=$SECONDS next=60 objects total
  BUILD_DIR=$(mktemp -d)
  # pip unpacks and compiles the source under TMPDIR. setsid puts the build
  # in a process group of its own, which stop_build ends as a whole (a
  # background job of a script would also ignore Ctrl-C).
  TMPDIR="$BUILD_DIR" MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) setsid \
    "$PY" -m pip wheel --no-build-isolation --no-deps -v \
    "mmcv==$MMCV_VERSION" -w "$CACHE" >"$log" 2>&1 &
  BUILD_PID=$!
  say "compiling (log: $log); a progress line every minute"
  while kill -0 "$BUILD_PID" 2>/dev/null; do
    sleep 2
    if [ $((SECONDS - start)) -ge $next ]; then
      next=$((next + 60))
      objects=$(find "$BUILD_DIR" -name '*.o' 2>/dev/null | wc -l)
      total=$(find "$BUILD_DIR" -name '*.cpp' -not -path '*/build/*' \
        2>/dev/null | grep -cE '/mmcv/ops/csrc/pytorch/(cpu/)?[^/]+$' || true)
      [ "$total" -gt 0 ] || total='?'  # the source is not unpacked yet
      say "mmcv build: $objects of $total objects compiled," \
        "$(((SECONDS - start) / 60)) min elapsed"
    fi
  done
  if wait "$BUILD_PID"; then
    BUILD_PID=
    say "mmcv built in $(((SECONDS - start) / 60)) min" \
      "$(((SECONDS - start) % 60)) s"
    stop_build
  else
    BUILD_PID=
    tail -n 30 "$log"
    say "building mmcv failed; the full log is $log"
    exit 1
  fi
}

if ! mmcv_ops_ok; then
  # A prebuilt wheel is only valid for the Python and torch it was built
  # against: one from MMSEG_PAT_FIND_LINKS or the cache is tried, then
  # checked with `import mmcv.ops`.
  cached=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$cached" ] && [ -n "${MMSEG_PAT_FIND_LINKS:-}" ]; then
    for whl in "$MMSEG_PAT_FIND_LINKS"/mmcv-$MMCV_VERSION-*.whl; do
      [ -f "$whl" ] || continue
      say "trying prebuilt mmcv wheel $whl"
      if install_mmcv_wheel "$whl" && mmcv_ops_ok; then
        cp "$whl" "$CACHE/"
        break
      fi
      say "that wheel does not import here (mmcv.ops); ignoring it"
    done
  elif [ -n "$cached" ]; then
    say "installing cached mmcv wheel $cached"
    install_mmcv_wheel "$cached" || true
  fi
  if ! mmcv_ops_ok; then
    rm -f "$CACHE"/mmcv-$MMCV_VERSION-*.whl
    say "building mmcv $MMCV_VERSION with compiled ops from source."
    say "This happens once per machine and takes about 14 minutes on 2 idle"
    say "cores (longer when they are busy); the wheel is cached in $CACHE."
    build_mmcv_wheel
    install_mmcv_wheel "$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl | head -n 1)"
    mmcv_ops_ok || { say "mmcv built but 'import mmcv.ops' fails"; exit 1; }
  fi
fi

say "installing mmseg_pat (editable) with mmengine, mmsegmentation and test tools"
# setup.cfg asks for ranges (a library must not move a user's versions);
# the project's own environment pins them.
"${PIP[@]}" --find-links "$CACHE" -e ".[tests,datasets]" \
  "mmengine==$MMENGINE_VERSION" "mmsegmentation==$MMSEG_VERSION"
# openmim, for the test of `mim train mmseg` / `mim test mmseg`. Without its
# dependencies: it requires opendatalab -> openxlab, which pins
# setuptools~=60.2 against torch's >=77 and is not used by mim train/test.
"${PIP[@]}" --no-deps "openmim==$OPENMIM_VERSION"
"${PIP[@]}" click colorama model-index pandas rich tabulate requests
mmcv_ops_ok || { say "'import mmcv.ops' fails after installing; remove $VENV and retry"; exit 1; }
"$PY" -c 'import mmseg_pat, mmseg, mmcv, torch; print("[setup] ready: torch", torch.__version__, "mmcv", mmcv.__version__, "mmseg", mmseg.__version__)'
