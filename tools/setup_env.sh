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
    say "This happens once per machine and takes about 30 minutes on 2 cores;"
    say "the wheel is cached in $CACHE."
    MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) "$PY" -m pip wheel --no-build-isolation \
      --no-deps -v "mmcv==$MMCV_VERSION" -w "$CACHE" 2>&1 \
      | grep --line-buffered -E '^\[[0-9]+/[0-9]+\]|Building wheel|Created wheel|rror' || true
    install_mmcv_wheel "$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl | head -n 1)"
    mmcv_ops_ok || { say "mmcv built but 'import mmcv.ops' fails"; exit 1; }
  fi
fi

say "installing mmseg_pat (editable) with mmengine, mmsegmentation and test tools"
"${PIP[@]}" --find-links "$CACHE" -e ".[tests,datasets]"
mmcv_ops_ok || { say "'import mmcv.ops' fails after installing; remove $VENV and retry"; exit 1; }
"$PY" -c 'import mmseg_pat, mmseg, mmcv, torch; print("[setup] ready: torch", torch.__version__, "mmcv", mmcv.__version__, "mmseg", mmseg.__version__)'
