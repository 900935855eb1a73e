#!/usr/bin/env bash
# Gather, on this (CPU) machine, everything a bare GPU machine needs to run
# benchmarks/gpu_check.sh, into one folder that travels with the working
# tree (the device tool's `carry=[".gpu_bundle"]`):
#
#   .gpu_bundle/wheels/  mmengine 0.10.7, mmsegmentation 1.2.2 and the small
#                        pure-Python (or cp312 manylinux) dependencies that
#                        such a machine lacks; an mmcv 2.1.0 wheel with
#                        compiled ops, built here for CPython 3.12 against
#                        torch 2.11.0 (the GPU machine's torch);
#                        setuptools < 81 (mmengine needs pkg_resources) and
#                        ninja (only for the fallback build below).
#   .gpu_bundle/src/     mmcv's source archive and our build-time patches, so
#                        that tools/gpu/run_bare.sh can rebuild mmcv there if
#                        the prebuilt wheel does not import.
#   .gpu_bundle/MANIFEST.txt  what is in it, sizes, checksums, build facts.
#
# Not gathered: torch, numpy, opencv, matplotlib, scipy, h5py, Pillow,
# packaging (the GPU machine's image has them).
#
# Needs a Python 3.12 with torch 2.11.0 to build mmcv against (a CUDA or CPU
# build of torch: the C++ ABI is the same). Set one up once, outside the repo:
#   /root/.pyenv/versions/3.12.1/bin/python -m venv /work/gpu_rehearsal/venv
#   /work/gpu_rehearsal/venv/bin/pip install torch==2.11.0 numpy \
#       opencv-python-headless matplotlib h5py scipy
#
# Usage: GPU_BUILD_PYTHON=/work/gpu_rehearsal/venv/bin/python \
#          bash tools/gpu/gather_bundle.sh [BUNDLE_DIR]      (default .gpu_bundle)
# Env:   MAX_JOBS (default 2: the CPUs here are shared), MMSEG_PAT_WHEEL_CACHE
#        (where the built mmcv wheel is kept between runs; default
#        ~/.cache/mmseg-pat/wheels), MMSEG_PAT_BUILD_DIR (scratch for the
#        build; default ~/.cache/mmseg-pat/build).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)

PY=${GPU_BUILD_PYTHON:-python3}
BUNDLE=${1:-.gpu_bundle}
TORCH_WANTED=2.11.0
PY_WANTED=3.12
MMCV_VERSION=2.1.0
MAX_JOBS=${MAX_JOBS:-2}
CACHE_ROOT=${MMSEG_PAT_WHEEL_CACHE:-$HOME/.cache/mmseg-pat/wheels}
BUILD_ROOT=${MMSEG_PAT_BUILD_DIR:-$HOME/.cache/mmseg-pat/build}
PATCH_DIR=$REPO/tools/gpu/patches/mmcv-$MMCV_VERSION

# Versions: those of the project's tested Python 3.11 stack (tools/setup_env.sh
# resolved them), so the GPU run uses the same code as the CPU results.
PURE_WHEELS=(
  mmengine==0.10.7 mmsegmentation==1.2.2
  addict==2.4.0 yapf==0.43.0 platformdirs==4.14.8 termcolor==3.3.0
  rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0
  ftfy==6.3.1 wcwidth==0.9.4 prettytable==3.18.0
  # pkg_resources (mmengine's package_utils, mmcv's setup.py) is gone from
  # setuptools >= 82 and deprecated in 81; pin the project's version.
  setuptools==80.10.2
  # compiled but small: cp312 / abi3 manylinux wheels.
  pyyaml==6.0.4 regex==2026.11.19
  # only for a fallback build of mmcv on the GPU machine.
  ninja==1.13.2
)

say() { printf '[gather] %s\n' "$*"; }
die() { printf '[gather] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

T0=$(now)
# The folder is deleted and refilled: only a plain folder inside the repo.
case $BUNDLE in
  ''|/*|.|./|..*|*/..*) die "BUNDLE_DIR must be a folder inside the repository, e.g. .gpu_bundle (got '$BUNDLE')" ;;
esac

# --- the build Python: 3.12 with torch 2.11.0 ------------------------------
command -v "$PY" >/dev/null 2>&1 || die "no Python at '$PY'; set GPU_BUILD_PYTHON (see the header of $0)"
read -r PYV TORCHV < <("$PY" -c 'import sys, torch; print(f"{sys.version_info[0]}.{sys.version_info[1]}", torch.__version__.split("+")[0])' 2>/dev/null) \
  || die "$PY cannot import torch; set GPU_BUILD_PYTHON to a Python $PY_WANTED with torch $TORCH_WANTED"
[ "$PYV" = "$PY_WANTED" ] || die "$PY is Python $PYV; the GPU machine runs $PY_WANTED (set GPU_BUILD_PYTHON)"
[ "$TORCHV" = "$TORCH_WANTED" ] || die "$PY has torch $TORCHV; the GPU machine has $TORCH_WANTED (set GPU_BUILD_PYTHON)"
TORCH_FULL=$("$PY" -c 'import torch; print(torch.__version__)')
say "building for Python $PYV, torch $TORCH_FULL ($PY)"

# --- the folder, ignored by git (only through .git/info/exclude) -----------
EXCLUDE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"
ENTRY="/${BUNDLE#./}"; ENTRY="${ENTRY%/}/"
if ! grep -qxF "$ENTRY" "$EXCLUDE" 2>/dev/null; then
  echo "$ENTRY" >>"$EXCLUDE"
  say "added $ENTRY to $EXCLUDE"
fi
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/wheels" "$BUNDLE/src"

# --- 1. wheels for CPython 3.12 on manylinux x86_64 ------------------------
# --no-deps: each dependency is named above on purpose (mmengine asks for
# opencv-python, which the GPU machine has as opencv-python-headless; torch,
# numpy & co. are there already). --only-binary with an explicit platform so
# that the wheels fit the GPU machine, whatever Python runs this script.
T=$(now)
"$PY" -m pip download -q --disable-pip-version-check --no-deps \
  --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$BUNDLE/wheels" "${PURE_WHEELS[@]}" \
  2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
say "downloaded ${#PURE_WHEELS[@]} wheels in $(since "$T") s"

# --- 2. mmcv 2.1.0 with compiled ops, built here ---------------------------
TAG="cp${PYV/./}-torch${TORCH_FULL}"
CACHE="$CACHE_ROOT/$TAG"
mkdir -p "$CACHE" "$BUILD_ROOT"
# Build tools for this build only (setuptools < 81 for mmcv's
# `import pkg_resources`, ninja for a parallel build), from the wheels just
# gathered: the same ones a fallback build on the GPU machine would use.
TOOLS="$BUILD_ROOT/tools-$TAG"
rm -rf "$TOOLS"
"$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps \
  --target "$TOOLS" "$BUNDLE"/wheels/setuptools-*.whl "$BUNDLE"/wheels/ninja-*.whl

# The source archive; pip runs its setup.py for the metadata, hence the tools.
PYTHONPATH="$TOOLS" "$PY" -m pip download -q --disable-pip-version-check \
  --no-deps --no-binary mmcv --no-build-isolation -d "$BUNDLE/src" \
  "mmcv==$MMCV_VERSION" \
  2> >(grep -v -e 'is ignored: it is neither a file nor a directory' \
              -e 'pkg_resources is deprecated' >&2)
SDIST="$BUNDLE/src/mmcv-$MMCV_VERSION.tar.gz"
[ -f "$SDIST" ] || die "pip did not leave $SDIST"
if [ -d "$PATCH_DIR" ] && ls "$PATCH_DIR"/*.patch >/dev/null 2>&1; then
  cp "$PATCH_DIR"/*.patch "$BUNDLE/src/"
fi

WHEEL=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$WHEEL" ]; then
  say "using the mmcv wheel built earlier: $WHEEL (delete it to rebuild)"
  BUILD_SECONDS="$(cat "$WHEEL.build_seconds" 2>/dev/null || echo '?') s, earlier"
else
  SRC="$BUILD_ROOT/mmcv-$MMCV_VERSION-$TAG"
  rm -rf "$SRC"
  tar -xzf "$SDIST" -C "$BUILD_ROOT"
  mv "$BUILD_ROOT/mmcv-$MMCV_VERSION" "$SRC"
  for p in "$PATCH_DIR"/*.patch; do
    [ -f "$p" ] || continue
    say "applying $(basename "$p")"
    patch -d "$SRC" -p1 --forward <"$p"
  done
  # CPU ops only: this machine has no GPU, so mmcv's setup.py picks its CPU
  # branch (CppExtension over csrc/pytorch/*.cpp and cpu/*.cpp); the Python
  # bindings of every op are still compiled, so `import mmcv.ops` works under
  # a CUDA torch. SegFormer and our losses use no mmcv op on the GPU.
  # CUDA_VISIBLE_DEVICES='' and FORCE_CUDA=0 keep it so on any machine.
  say "building mmcv $MMCV_VERSION (CPU ops) with MAX_JOBS=$MAX_JOBS; about 15-30 min on 2 cores"
  T=$(now)
  LOG="$BUILD_ROOT/mmcv-build-$TAG.log"
  if ! (cd "$SRC" && CUDA_VISIBLE_DEVICES='' FORCE_CUDA=0 MMCV_WITH_OPS=1 \
        MAX_JOBS="$MAX_JOBS" PYTHONPATH="$TOOLS" PATH="$TOOLS/bin:$PATH" \
        nice -n 10 "$PY" -m pip wheel -v --disable-pip-version-check \
        --no-build-isolation --no-deps --no-index . -w "$CACHE" >"$LOG" 2>&1); then
    grep -E 'error|Error' "$LOG" | head -n 20 >&2 || true
    die "mmcv build failed; full log: $LOG"
  fi
  BUILD_SECONDS=$(since "$T")
  WHEEL=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl | head -n 1)
  echo "$BUILD_SECONDS" >"$WHEEL.build_seconds"
  BUILD_SECONDS="$BUILD_SECONDS s"
  say "built $WHEEL in $BUILD_SECONDS (log: $LOG)"

  # Debug symbols are most of the .so; strip them and repack the wheel
  # (RECORD rewritten with the new hashes).
  T=$(now)
  "$PY" - "$WHEEL" <<'PY'
import base64, hashlib, os, subprocess, sys, tempfile, zipfile
path = sys.argv[1]
with tempfile.TemporaryDirectory() as tmp:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        z.extractall(tmp)
    record = next(n for n in names if n.endswith('.dist-info/RECORD'))
    before = os.path.getsize(path)
    for n in names:
        if n.endswith('.so'):
            subprocess.run(['strip', '--strip-debug', os.path.join(tmp, n)],
                           check=True)
    rows = []
    for n in names:
        if n == record:
            rows.append(f'{n},,')
            continue
        data = open(os.path.join(tmp, n), 'rb').read()
        digest = base64.urlsafe_b64encode(
            hashlib.sha256(data).digest()).rstrip(b'=').decode()
        rows.append(f'{n},sha256={digest},{len(data)}')
    with open(os.path.join(tmp, record), 'w') as f:
        f.write('\n'.join(rows) + '\n')
    out = path + '.tmp'
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:
        for n in names:
            z.write(os.path.join(tmp, n), n)
    os.replace(out, path)
    print(f'[gather] stripped debug symbols: wheel {before / 2**20:.1f} -> '
          f'{os.path.getsize(path) / 2**20:.1f} MiB')
PY
  say "strip took $(since "$T") s"
fi
cp "$WHEEL" "$BUNDLE/wheels/"

# --- 3. a quick check of the wheel here (the full check is run_bare.sh) ----
# The highest glibc / libstdc++ symbol versions the .so needs: the GPU
# machine's system libraries must be at least as new.
SO_INFO=$("$PY" - "$WHEEL" <<'PY'
import re, subprocess, sys, tempfile, zipfile
with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(sys.argv[1]) as z:
    so = next(n for n in z.namelist() if n.endswith('.so'))
    z.extract(so, tmp)
    try:
        out = subprocess.run(['objdump', '-T', f'{tmp}/{so}'],
                             capture_output=True, text=True).stdout
    except OSError:  # no binutils: say so rather than stop
        out = ''
        print('(objdump missing) ', end='')
def top(prefix):
    vs = {tuple(map(int, v.split('.'))) for v in re.findall(prefix + r'_([\d.]+)', out)}
    return '.'.join(map(str, max(vs))) if vs else 'none'
print(f'needs GLIBC_{top("GLIBC")}, GLIBCXX_{top("GLIBCXX")}, CXXABI_{top("CXXABI")}')
PY
)
say "mmcv .so $SO_INFO"

# --- 4. manifest and size --------------------------------------------------
{
  echo "# .gpu_bundle, gathered $(date -u +%Y-%m-%dT%H:%MZ) by tools/gpu/gather_bundle.sh"
  echo "# built against: Python $("$PY" -c 'import platform; print(platform.python_version())'), torch $TORCH_FULL, $(ldd --version | head -n 1)"
  echo "# mmcv build: CPU ops only, MAX_JOBS=$MAX_JOBS, ${BUILD_SECONDS}; .so $SO_INFO"
  (cd "$BUNDLE" && find . -type f ! -name MANIFEST.txt | sort | while read -r f; do
     printf '%s  %8d  %s\n' "$(sha256sum "$f" | cut -c1-16)" "$(stat -c %s "$f")" "$f"
   done)
} >"$BUNDLE/MANIFEST.txt"
SIZE=$(du -sb "$BUNDLE" | cut -f1)
SIZE_MIB=$(awk -v s="$SIZE" 'BEGIN { printf "%.1f", s / 1048576 }')
TREE=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
TREE_MIB=$(awk -v s="$TREE" 'BEGIN { printf "%.1f", s / 1048576 }')
say "bundle: $BUNDLE, $(ls "$BUNDLE/wheels" | wc -l) wheels, $SIZE_MIB MiB (tracked files: $TREE_MIB MiB; the device tool takes 64 MiB in all)"
if [ $((SIZE + TREE)) -gt $((60 * 1024 * 1024)) ]; then
  die "bundle + working tree exceed 60 MiB; the device tool carries 64 MiB at most"
fi
say "done in $(since "$T0") s. On the GPU machine: bash tools/gpu/run_bare.sh, with carry=[\"$BUNDLE\"]"
