#!/usr/bin/env bash
# One prepared GPU check, about 5 minutes on one GPU (under 8 with the
# bare-machine install of tools/gpu/run_bare.sh). Parts, in the order run:
#  train  SegFormer-B0 on Cityscapes-shaped data at the configs' crop
#         (512 x 1024, batch 2), ITERS iterations through tools/train.py with
#         configs/ce/segformer_cityscapes.py and configs/pat/... (PATLoss +
#         PrevPredictionHook), random init: iteration time, data wait, peak
#         GPU memory, PAT / CE. Without DATA_ROOT the data are generated
#         here (tools/gpu/make_cityscapes_like.py; the GPU machine has none).
#  hook   the hook's own time per iteration, paired with / without it:
#         benchmarks/hook_overhead.py --device cuda --crops 512x1024 ...
#  loss   the loss alone, PAT vs CE forward + backward time and peak memory:
#         benchmarks/loss_speed_memory.py --device cuda
# It ends by printing ONE Markdown table (card, torch, numbers) for
# benchmarks/README.md, also written to $OUT/gpu_check.md, next to each
# part's own output ($OUT gets at most 6 files: the device tool brings back
# 8). On a machine without CUDA it says so and exits 0.
#
# Usage: bash benchmarks/gpu_check.sh [ITERS]      (default 200)
# Env:   PYTHON          the Python with the project's stack (default .venv's,
#                        else python)
#        OUT             where the tables go (the device tool sets it; default
#                        work_dirs/gpu_check/out)
#        GPU_CHECK_WORK  scratch: work dirs, generated data (work_dirs/gpu_check)
#        DATA_ROOT       a Cityscapes-layout data_root to use instead of
#                        generated data
#        GPU_CHECK_PARTS which parts, e.g. "train hook" (default all three)
#        GPU_CHECK_BUDGET_S  seconds the whole check may take (default 450;
#                        1800 in a CPU rehearsal):
#                        each part gets at most what is left, so the table is
#                        printed inside the device tool's 10-minute command
#        HOOK_ITERS, HOOK_REPEATS (default 30, 3), NUM_WORKERS (default 8 on
#                        >= 10 cores, else 2)
#        FORCE_CPU_REHEARSAL=1  run the parts on the CPU with 2 iterations (4
#                        for the hook; default parts "train hook"), to rehearse the scripts
#                        on a machine without a GPU; no meaningful numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
PY=${PYTHON:-python}
export PYTHONUNBUFFERED=1

REHEARSAL=${FORCE_CPU_REHEARSAL:-0}
if [ "$REHEARSAL" = 1 ]; then
  # CPU even where a GPU is present; tiny counts: this proves the commands,
  # not the speed.
  export CUDA_VISIBLE_DEVICES=''
  DEVICE=cpu
  ITERS=${1:-2}
  PARTS=${GPU_CHECK_PARTS:-train hook}
  # hook_overhead.py drops its first 2 iterations from the medians.
  HOOK_ITERS=${HOOK_ITERS:-4}
  HOOK_REPEATS=${HOOK_REPEATS:-1}
  N_TRAIN=2 N_VAL=1
  # A 512 x 1024 SegFormer iteration takes 5-30 s on 2 shared cores.
  CAP=600 LOSS_CAP=600 DEFAULT_BUDGET=1800
else
  DEVICE=cuda
  ITERS=${1:-200}
  PARTS=${GPU_CHECK_PARTS:-train hook loss}
  HOOK_ITERS=${HOOK_ITERS:-30}
  HOOK_REPEATS=${HOOK_REPEATS:-3}
  N_TRAIN=10 N_VAL=2
  # Each part's cap (s); expected: about 60 per training run, 60-90 for
  # the hook benchmark, 90-150 for the loss benchmark (20 fresh processes,
  # 5-7 s of imports each).
  CAP=150 LOSS_CAP=210 DEFAULT_BUDGET=450
fi
WORK=${GPU_CHECK_WORK:-work_dirs/gpu_check}
RESULTS=${OUT:-$WORK/out}
BUDGET=${GPU_CHECK_BUDGET_S:-$DEFAULT_BUDGET}
CORES=$(nproc)
if [ -z "${NUM_WORKERS:-}" ]; then
  if [ "$CORES" -ge 10 ]; then NUM_WORKERS=8; else NUM_WORKERS=2; fi
fi
# DataLoader workers hand batches over in /dev/shm: a container's default
# 64 MiB would kill them (8 workers x 2 prefetched batches of ~12 MB), so
# load in the main process there (slower data, same step times).
SHM_MIB=$(df -m --output=avail /dev/shm 2>/dev/null | tail -n 1 | tr -d ' ' || true)
if [ -n "$SHM_MIB" ] && [ "$SHM_MIB" -lt 1024 ] 2>/dev/null && [ "$NUM_WORKERS" -gt 0 ]; then
  echo "[gpu_check] /dev/shm has only $SHM_MIB MiB free: NUM_WORKERS=0 instead of $NUM_WORKERS"
  NUM_WORKERS=0
fi
# PyTorch refuses persistent workers without workers.
if [ "$NUM_WORKERS" -gt 0 ]; then PERSISTENT=True VAL_WORKERS=1; else PERSISTENT=False VAL_WORKERS=0; fi
for part in $PARTS; do
  case $part in
    train|hook|loss) ;;
    *) echo "gpu_check: unknown part '$part' in GPU_CHECK_PARTS (train, hook, loss)" >&2; exit 2 ;;
  esac
done
START=$(date +%s)

say() { printf '[gpu_check] %s\n' "$*"; }
elapsed() { echo $(( $(date +%s) - START )); }
# Seconds a part may take: its own cap, or what is left of the budget less
# 20 s for the table, whichever is smaller.
allowance() {
  local left=$(( BUDGET - $(elapsed) - 20 ))
  if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
# run_part NAME CAP LOGFILE CMD...: runs CMD under `timeout` (which ends its
# whole process group: dataloader workers too), its output into LOGFILE
# only (the device tool returns the last 12,000 characters of the screen),
# whose tail is shown on failure; records "ok", "failed (exit N)", "timed
# out" or "skipped" in STATUS for the table, and never stops the script.
declare -A STATUS
declare -A SECONDS_OF
run_part() {
  local name=$1 cap=$2 log=$3; shift 3
  local limit; limit=$(allowance "$cap")
  if [ "$limit" -lt 30 ]; then
    say "$name: skipped, only $limit s of the ${BUDGET} s budget left"
    STATUS[$name]="skipped (time budget spent)"
    return 0
  fi
  local t0 rc=0; t0=$(date +%s)
  say "$name: $* (at most $limit s)"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1 || rc=$?
  SECONDS_OF[$name]=$(( $(date +%s) - t0 ))
  case $rc in
    0) STATUS[$name]=ok ;;
    124|137) STATUS[$name]="timed out after $limit s" ;;
    *) STATUS[$name]="failed (exit $rc)" ;;
  esac
  say "$name: ${STATUS[$name]} in ${SECONDS_OF[$name]} s"
  if [ "$rc" -ne 0 ]; then tail -n 25 "$log" | sed 's/^/    /'; fi
}

if ! "$PY" -c 'import torch, mmcv.ops, mmseg, mmseg_pat' 2>/dev/null; then
  echo "gpu_check: $PY cannot import torch, mmcv.ops, mmseg and mmseg_pat;" \
    "run make setup (or tools/gpu/run_bare.sh on a bare machine, or set PYTHON) first." >&2
  "$PY" -c 'import torch, mmcv.ops, mmseg, mmseg_pat' 2>&1 | tail -n 5 >&2 || true
  exit 1
fi
if [ "$REHEARSAL" != 1 ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu_check: no CUDA device on this machine; skipping the GPU parts."
  echo "gpu_check: (FORCE_CPU_REHEARSAL=1 runs them on the CPU with 2 iterations, to test the scripts.)"
  exit 0
fi
mkdir -p "$WORK" "$RESULTS"
# Nothing from an earlier check may reach this one's table.
rm -rf "${WORK:?}/ce" "${WORK:?}/pat"
(cd "$RESULTS" && rm -f gpu_check.md train_ce.log train_pat.log hook_overhead.log loss_speed_memory.log)
TITLE=$("$PY" - "$DEVICE" "$CORES" <<'PY'
import datetime, subprocess, sys
import mmcv, mmengine, mmseg, torch
device, cores = sys.argv[1:]
if device == 'cuda':
    card = torch.cuda.get_device_name(0)
    try:
        driver = subprocess.run(
            ['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
            capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        driver = '?'
    where = f'{card} (driver {driver or "?"}, CUDA {torch.version.cuda})'
else:
    where = 'CPU REHEARSAL (FORCE_CPU_REHEARSAL=1: no GPU, 2 iterations; not a result)'
print(f'**{where}**, {cores} CPU cores; torch {torch.__version__}, '
      f'mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, '
      f'mmseg {mmseg.__version__}, Python {sys.version.split()[0]}; '
      f'{datetime.date.today()}, `benchmarks/gpu_check.sh`')
PY
)
say "$TITLE"
say "parts: $PARTS; $ITERS training iterations; results in $RESULTS; budget $BUDGET s"

for part in $PARTS; do
  case $part in
  train)
    # --- SegFormer-B0, CE vs PAT + hook, through the project's configs ---
    if [ -n "${DATA_ROOT:-}" ]; then
      DATA=$DATA_ROOT
    else
      # Generated on the spot: nothing but the working tree and the bundle
      # reaches the GPU machine.
      DATA=$WORK/cityscapes_like
      rm -rf "$DATA"
      t0=$(date +%s)
      "$PY" tools/gpu/make_cityscapes_like.py "$DATA" --train "$N_TRAIN" --val "$N_VAL"
      SECONDS_OF[data]=$(( $(date +%s) - t0 ))
    fi
    if [ "$ITERS" -lt 20 ]; then LOG_INTERVAL=1; else LOG_INTERVAL=10; fi
    for loss in ce pat; do
      run_part "train_$loss" "$CAP" "$RESULTS/train_$loss.log" \
        "$PY" tools/train.py "configs/$loss/segformer_cityscapes.py" \
        --work-dir "$WORK/$loss" --cfg-options \
        model.backbone.init_cfg=None \
        train_dataloader.dataset.data_root="$DATA" \
        val_dataloader.dataset.data_root="$DATA" \
        test_dataloader.dataset.data_root="$DATA" \
        train_dataloader.batch_size=2 \
        train_dataloader.num_workers="$NUM_WORKERS" \
        train_dataloader.persistent_workers="$PERSISTENT" \
        val_dataloader.num_workers="$VAL_WORKERS" \
        val_dataloader.persistent_workers="$PERSISTENT" \
        randomness.seed=0 \
        train_cfg.max_iters="$ITERS" train_cfg.val_interval=$((ITERS + 1)) \
        default_hooks.checkpoint.interval=$((ITERS + 1)) \
        default_hooks.checkpoint.save_last=False \
        default_hooks.logger.interval="$LOG_INTERVAL"
    done
    ;;
  hook)
    # --- the hook's own cost, paired inside one run ---
    run_part hook "$CAP" "$RESULTS/hook_overhead.log" \
      "$PY" benchmarks/hook_overhead.py --device "$DEVICE" --crops 512x1024 \
      --batch 2 --iters "$HOOK_ITERS" --repeats "$HOOK_REPEATS"
    grep -E '^[[:space:]]*\|' "$RESULTS/hook_overhead.log" 2>/dev/null || true
    ;;
  loss)
    # --- the loss alone (each loss's memory in a fresh process) ---
    run_part loss "$LOSS_CAP" "$RESULTS/loss_speed_memory.log" \
      "$PY" benchmarks/loss_speed_memory.py --device "$DEVICE" --repeats 20
    grep -E '^[[:space:]]*\||^device:' "$RESULTS/loss_speed_memory.log" 2>/dev/null || true
    ;;
  esac
done

status_args=()
for n in train_ce train_pat hook loss; do
  status_args+=("$n=${STATUS[$n]:-not run (GPU_CHECK_PARTS=$PARTS)}")
done
timing=""
for n in data train_ce train_pat hook loss; do
  if [ -n "${SECONDS_OF[$n]:-}" ]; then timing+="$n ${SECONDS_OF[$n]} s, "; fi
done
say "times: ${timing}total $(elapsed) s"
echo
echo "==== GPU check: paste into benchmarks/README.md ===="
"$PY" tools/gpu/gpu_check_table.py "$RESULTS" "$WORK" "$ITERS" \
  --title "$TITLE" --status "${status_args[@]}"
echo "(also in $RESULTS/gpu_check.md; per part: train_ce.log, train_pat.log, hook_overhead.log, loss_speed_memory.log)"

failed=0
for n in "${!STATUS[@]}"; do [ "${STATUS[$n]}" = ok ] || failed=1; done
exit $failed
