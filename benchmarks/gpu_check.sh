#!/usr/bin/env bash
# One prepared GPU check, under 10 minutes on one GPU:
#  1. the loss benchmark on the GPU (PAT vs CE forward+backward time and peak
#     memory, benchmarks/loss_speed_memory.py --device cuda);
#  2. SegFormer-B0 on Cityscapes at the configs' full crop (512 x 1024),
#     trained ITERS iterations with configs/ce/... and configs/pat/...
#     (random init, the Cityscapes sample unless DATA_ROOT says otherwise),
#     reporting iteration time, peak GPU memory and the PAT / CE ratios.
# On a machine without CUDA it says so and skips the GPU parts (exit 0).
# Needs the project's stack with a CUDA build of torch and mmcv.
#
# Usage: bash benchmarks/gpu_check.sh [ITERS]     (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
PY=${PYTHON:-python}
ITERS=${1:-300}
DATA_ROOT=${DATA_ROOT:-../shared/data/cityscapes}
OUT=${OUT:-work_dirs/gpu_check}

if ! "$PY" -c 'import torch, mmseg_pat' 2>/dev/null; then
  echo "gpu_check: $PY cannot import torch and mmseg_pat; run make setup" \
    "(or set PYTHON) first." >&2
  exit 1
fi
if ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu_check: no CUDA device on this machine; skipping the GPU parts."
  exit 0
fi
"$PY" -c 'import torch; print("gpu_check on", torch.cuda.get_device_name(0), "| torch", torch.__version__)'

echo "== 1. loss alone (N x C x H x W), PAT vs CE on the GPU"
"$PY" benchmarks/loss_speed_memory.py --device cuda --repeats 20

echo "== 2. SegFormer-B0, Cityscapes, crop 512x1024, batch 2, $ITERS iterations"
for loss in ce pat; do
  "$PY" tools/train.py "configs/$loss/segformer_cityscapes.py" \
    --work-dir "$OUT/$loss" --cfg-options \
    model.backbone.init_cfg=None \
    train_dataloader.dataset.data_root="$DATA_ROOT" \
    val_dataloader.dataset.data_root="$DATA_ROOT" \
    test_dataloader.dataset.data_root="$DATA_ROOT" \
    train_dataloader.batch_size=2 \
    train_cfg.max_iters="$ITERS" train_cfg.val_interval=$((ITERS + 1)) \
    default_hooks.checkpoint.interval=$((ITERS + 1)) \
    default_hooks.logger.interval=10 > "$OUT.$loss.log" 2>&1 \
    || { tail -n 30 "$OUT.$loss.log"; exit 1; }
done
"$PY" - "$OUT" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
rows = {}
for loss in ('ce', 'pat'):
    path = sorted(glob.glob(f'{out}/{loss}/*/vis_data/scalars.json'))[-1]
    logs = [json.loads(line) for line in open(path)]
    train = [r for r in logs if 'time' in r and 'loss' in r]
    times = [r['time'] for r in train[len(train) // 5:]]  # after warm-up
    rows[loss] = (statistics.median(times), max(r.get('memory', 0) for r in train))
print('| loss | s / iteration | peak GPU memory (MB) |')
print('|---|---:|---:|')
for loss, (t, m) in rows.items():
    print(f'| {loss} | {t:.4f} | {m:.0f} |')
t_ratio = rows['pat'][0] / rows['ce'][0]
m_ratio = rows['pat'][1] / max(rows['ce'][1], 1)
print(f'PAT / CE: iteration time {t_ratio:.3f}, peak memory {m_ratio:.3f}')
PY
