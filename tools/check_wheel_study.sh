#!/usr/bin/env bash
# The package stands alone: build its sdist and, from it, its wheel (as
# `python -m build` does), install the wheel (not editable) into a folder
# of its own, and run the loss study's `shapes` preset from an empty
# folder, with the smallest settings of the command line. The heavy
# dependencies (torch, mmcv, mmengine, mmseg) are those of the project's
# .venv (PY=...): only mmseg_pat comes from the wheel, which is checked.
#
# Usage: bash tools/check_wheel_study.sh   (PY defaults to .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-$REPO/.venv/bin/python}
[ -x "$PY" ] || { echo "no Python at $PY: make setup, or PY=..." >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

step() { printf '\n=== wheel check: %s\n' "$*"; }
start=$SECONDS

# The tracked and the new (not ignored) files, links kept: building in a
# copy leaves no build/ or *.egg-info in the checkout, and no stale file of
# an earlier build/ can slip into the wheel.
step "sources of $REPO (uncommitted changes included) into $TMP/src"
mkdir "$TMP/src"
git ls-files -z --cached --others --exclude-standard |
  tar --null -T - -cf - | tar -xf - -C "$TMP/src"

step "sdist, then the wheel from the sdist"
(cd "$TMP/src" && "$PY" -c \
  'import sys; from setuptools import build_meta as b; b.build_sdist(sys.argv[1])' \
  "$TMP/dist" >"$TMP/sdist.log" 2>&1) || { cat "$TMP/sdist.log" >&2; exit 1; }
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$TMP/dist" \
  "$TMP"/dist/mmseg_pat-*.tar.gz
WHEEL=$(ls "$TMP"/dist/mmseg_pat-*.whl)
"$PY" - "$WHEEL" <<'EOF'
import os.path as osp
import sys
import zipfile

configs = [n for n in zipfile.ZipFile(sys.argv[1]).namelist()
           if n.startswith('mmseg_pat/.mim/configs/') and n.endswith('.py')]
print(f'{osp.basename(sys.argv[1])}: {len(configs)} configs')
sys.exit(not configs)
EOF

step "install the wheel into $TMP/site (not editable)"
"$PY" -m pip install -q --no-deps --no-index --target "$TMP/site" "$WHEEL"
rm -rf "$TMP/src"

mkdir "$TMP/run"
cd "$TMP/run"
export PYTHONPATH=$TMP/site
step "mmseg_pat and its configs come from the wheel, not from $REPO"
"$PY" - "$TMP/site" "$REPO" <<'EOF'
import os.path as osp
import sys

import mmseg_pat
from mmseg_pat.analysis.presets import DEMO_CONFIG, config_path

site, repo = (osp.realpath(p) + osp.sep for p in sys.argv[1:])
for path in (mmseg_pat.__file__, config_path(DEMO_CONFIG)):
    path = osp.realpath(path)
    print(path)
    if not path.startswith(site) or path.startswith(repo):
        sys.exit(f'{path} is not from the installed wheel in {site}')
EOF

step "python -m mmseg_pat.analysis.loss_study --preset shapes in $TMP/run"
"$PY" -m mmseg_pat.analysis.loss_study --preset shapes --methods ce pat \
  --seeds 0 --iters 2 --out study >study.log 2>&1 ||
  { tail -n 60 study.log >&2; echo "the study failed (log above)" >&2; exit 1; }
cat study/results.md
for file in runs.csv results.md COMMAND.txt per_class_iou.png \
  weighting_curves.png pat_weights_example.png; do
  [ -s "study/$file" ] || { echo "the study wrote no $file" >&2; exit 1; }
done
"$PY" - study/runs.csv <<'EOF'
import csv
import sys

with open(sys.argv[1], newline='') as f:
    status = [(r['method'], r['status']) for r in csv.DictReader(f)]
print(f'runs: {status}')
sys.exit(status != [('ce', 'ok'), ('pat', 'ok')])
EOF
step "passed in $((SECONDS - start)) s"
