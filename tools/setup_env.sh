#!/usr/bin/env bash
# Create or update the project's virtual environment with one of the two
# pinned OpenMMLab stacks, chosen by STACK (the extra of setup.cfg it
# installs), and this package in editable mode:
#   STACK=openmmlab (default): mmengine 0.10.7, mmcv 2.1.0 with compiled
#     ops, mmsegmentation 1.2.2 (upstream's last release);
#   STACK=onedl: the maintained OneDL fork, onedl-mmengine 0.10.12,
#     onedl-mmcv 2.3.6 with compiled ops, onedl-mmsegmentation 1.4.2.
# Both with torch 2.13.0 (CPU). OpenCV is not pinned: MMSeg's drawing
# works with 4.10 to 5.1 (README, "Which OpenMMLab?").
# The two families install the same import names (mmcv, mmengine, mmseg):
# a venv holds one of them, and this script removes the other's
# distributions from it.
#
# PyPI has only the source archive of either mmcv: the compiled wheel is
# built once per machine and cached in $MMSEG_PAT_WHEEL_CACHE (default
# ~/.cache/mmseg-pat/wheels/<python>-torch<version>/). MMSEG_PAT_FIND_LINKS
# may name a folder with a prebuilt wheel of it for this Python and torch.
set -euo pipefail

VENV=${1:-.venv}
STACK=${STACK:-openmmlab}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
OPENMIM_VERSION=0.3.9
case $STACK in
  openmmlab)
    MMCV_DIST=mmcv MMCV_VERSION=2.1.0 BUILD_MINUTES=14
    MMENGINE=mmengine==0.10.7 MMSEG=mmsegmentation==1.2.2
    OTHER_FAMILY="onedl-mmcv onedl-mmengine onedl-mmsegmentation"
    # setuptools < 81 keeps pkg_resources, which mmcv 2.1.0's build,
    # mmengine 0.10.7's config loader (mmseg:: paths) and openmim import;
    # torch 2.13 wants >= 77.0.3.
    SETUPTOOLS="setuptools>=77.0.3,<81"
    ;;
  onedl)
    MMCV_DIST=onedl-mmcv MMCV_VERSION=2.3.6 BUILD_MINUTES=9
    MMENGINE=onedl-mmengine==0.10.12 MMSEG=onedl-mmsegmentation==1.4.2
    OTHER_FAMILY="mmcv mmcv-full mmcv-lite mmengine mmengine-lite mmsegmentation"
    # onedl-mmcv's build asks setuptools >= 80 and packaging >= 24.2 (its
    # pyproject); the fork needs no pkg_resources, < 81 is what was checked.
    SETUPTOOLS="setuptools>=80,<81"
    ;;
  *)
    echo "STACK must be openmmlab or onedl, not '$STACK'" >&2
    exit 2
    ;;
esac
# file names of the wheels: onedl-mmcv -> onedl_mmcv-2.3.6-...whl
MMCV_WHEEL_GLOB="${MMCV_DIST//-/_}-$MMCV_VERSION-*.whl"
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q)

# Both families write mmcv/, mmengine/ and mmseg/: never two in one venv.
other_family_installed() {
  "$PY" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null |
    cut -d= -f1 | tr 'A-Z_' 'a-z-' |
    grep -xF "$(printf '%s\n' $OTHER_FAMILY)" || true
}
installed_other=$(other_family_installed)
if [ -n "$installed_other" ]; then
  say "STACK=$STACK: removing the other family's" $installed_other "from $VENV"
  "$PY" -m pip uninstall -y -q $installed_other
fi

say "STACK=$STACK: installing build tools and torch==$TORCH_VERSION"
"${PIP[@]}" "$SETUPTOOLS" wheel ninja psutil "packaging>=24.2"
"${PIP[@]}" "torch==$TORCH_VERSION"

TAG=$("$PY" -c 'import sys, torch; print(f"cp{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__}")')
CACHE=${MMSEG_PAT_WHEEL_CACHE:-$HOME/.cache/mmseg-pat/wheels}/$TAG
mkdir -p "$CACHE"

# mmcv of the chosen distribution and version, with its compiled ops (a
# build without torch at hand, e.g. in pip's build isolation, leaves them
# out without failing).
mmcv_ops_ok() {
  "$PY" - "$MMCV_DIST" "$MMCV_VERSION" >/dev/null 2>&1 <<'EOF'
import sys
from importlib.metadata import version
import mmcv, mmcv.ops
dist, wanted = sys.argv[1:]
assert version(dist) == wanted and mmcv.__version__ == wanted
EOF
}

# Installs a wheel file with its dependencies (addict, yapf, opencv, ...).
install_mmcv_wheel() {
  "$PY" -m pip uninstall -y -q "$MMCV_DIST" >/dev/null 2>&1 || true
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
# pip's output goes to $CACHE/$MMCV_DIST-build.log (ninja's [n/N] lines do
# not come through pip as they are made): the progress is the number of
# object files compiled so far in the build folder, out of the C++ sources
# of the CPU ops (77 for mmcv 2.1.0, 78 for onedl-mmcv 2.3.6).
# --no-build-isolation: the build must see torch (and, for mmcv 2.1.0,
# pkg_resources). mmcv 2.1.0 compiles its ops only with MMCV_WITH_OPS=1;
# onedl-mmcv compiles them whenever torch imports.
build_mmcv_wheel() {
  local log="$CACHE/$MMCV_DIST-build.log" start=$SECONDS next=60 objects total
  BUILD_DIR=$(mktemp -d)
  # pip unpacks and compiles the source under TMPDIR. setsid puts the build
  # in a process group of its own, which stop_build ends as a whole (a
  # background job of a script would also ignore Ctrl-C).
  TMPDIR="$BUILD_DIR" MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) setsid \
    "$PY" -m pip wheel --no-build-isolation --no-deps -v \
    "$MMCV_DIST==$MMCV_VERSION" -w "$CACHE" >"$log" 2>&1 &
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
      say "$MMCV_DIST build: $objects of $total objects compiled," \
        "$(((SECONDS - start) / 60)) min elapsed"
    fi
  done
  if wait "$BUILD_PID"; then
    BUILD_PID=
    say "$MMCV_DIST built in $(((SECONDS - start) / 60)) min" \
      "$(((SECONDS - start) % 60)) s"
    stop_build
  else
    BUILD_PID=
    tail -n 30 "$log"
    say "building $MMCV_DIST failed; the full log is $log"
    exit 1
  fi
}

if ! mmcv_ops_ok; then
  # A prebuilt wheel is only valid for the Python and torch it was built
  # against: one from MMSEG_PAT_FIND_LINKS or the cache is tried, then
  # checked with `import mmcv.ops`.
  cached=$(ls "$CACHE"/$MMCV_WHEEL_GLOB 2>/dev/null | head -n 1 || true)
  if [ -z "$cached" ] && [ -n "${MMSEG_PAT_FIND_LINKS:-}" ]; then
    for whl in "$MMSEG_PAT_FIND_LINKS"/$MMCV_WHEEL_GLOB; do
      [ -f "$whl" ] || continue
      say "trying prebuilt $MMCV_DIST wheel $whl"
      if install_mmcv_wheel "$whl" && mmcv_ops_ok; then
        cp "$whl" "$CACHE/"
        break
      fi
      say "that wheel does not import here (mmcv.ops); ignoring it"
    done
  elif [ -n "$cached" ]; then
    say "installing cached $MMCV_DIST wheel $cached"
    install_mmcv_wheel "$cached" || true
  fi
  if ! mmcv_ops_ok; then
    rm -f "$CACHE"/$MMCV_WHEEL_GLOB
    say "building $MMCV_DIST $MMCV_VERSION with compiled ops from source."
    say "This happens once per machine and takes about $BUILD_MINUTES minutes"
    say "on 2 idle cores (longer when they are busy); the wheel is cached in"
    say "$CACHE."
    build_mmcv_wheel
    install_mmcv_wheel "$(ls "$CACHE"/$MMCV_WHEEL_GLOB | head -n 1)"
    mmcv_ops_ok || { say "$MMCV_DIST built but 'import mmcv.ops' fails"; exit 1; }
  fi
fi

say "installing mmseg_pat[$STACK] (editable) with $MMENGINE, $MMSEG and test tools"
# setup.cfg asks for ranges (a library must not move a user's versions);
# the project's own environment pins them.
"${PIP[@]}" --find-links "$CACHE" -e ".[tests,datasets,$STACK]" \
  "$MMENGINE" "$MMSEG"
installed_other=$(other_family_installed)
if [ -n "$installed_other" ]; then
  say "installing pulled in" $installed_other "beside the $STACK stack"
  exit 1
fi
# openmim, for the test of `mim train mmseg` / `mim test mmseg` (upstream
# only: openmim finds MMSeg by the distribution name mmsegmentation, and on
# the fork `mim train mmseg -y` would install upstream MMSeg beside it).
# Without its dependencies: it requires opendatalab -> openxlab, which pins
# setuptools~=60.2 against torch's >=77 and is not used by mim train/test.
if [ "$STACK" = openmmlab ]; then
  "${PIP[@]}" --no-deps "openmim==$OPENMIM_VERSION"
  "${PIP[@]}" click colorama model-index pandas rich tabulate requests
fi
mmcv_ops_ok || { say "'import mmcv.ops' fails after installing; remove $VENV and retry"; exit 1; }
"$PY" -c 'import mmseg_pat, mmseg, mmcv, torch; print("[setup] ready:", mmseg_pat.STACK, "stack, torch", torch.__version__, "mmcv", mmcv.__version__, "mmseg", mmseg.__version__)'
