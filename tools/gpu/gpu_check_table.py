"""The one summary table of benchmarks/gpu_check.sh, from its parts' outputs.

Reads, from the results folder, whichever of these exist:

* ``loss_speed_memory.log``: ``benchmarks/loss_speed_memory.py``'s output;
  its target row (2 x 19 x 512 x 1024) gives the loss-alone numbers;
* ``<work>/{ce,pat}/*/vis_data/scalars.json``: the two training runs
  (MMEngine's scalars: ``time``, ``data_time``, ``memory`` per logged row);
* ``hook_overhead.log``: ``benchmarks/hook_overhead.py``'s output; from
  its Markdown tables, the medians of the columns named like
  "hook ... (s)" and "paired ratio".

and prints one Markdown table (also written to ``<results>/gpu_check.md``);
a part that did not run or could not be read shows as "n/a" with the reason
under the table. Usage::

    python tools/gpu/gpu_check_table.py RESULTS WORK ITERS [--status a=ok ...]
"""
import argparse
import glob
import json
import os.path as osp
import re
import statistics
import sys

TARGET = '2 x 19 x 512 x 1024'


def number(text):
    m = re.search(r'[-+]?\d+(?:\.\d+)?', text)
    return float(m.group()) if m else None


def fmt(value, digits):
    return 'n/a' if value is None else f'{value:.{digits}f}'


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def loss_alone(results):
    path = osp.join(results, 'loss_speed_memory.log')
    if not osp.isfile(path):
        return None, 'loss_speed_memory.log missing'
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if cells and cells[0] == TARGET and len(cells) >= 7:
            ce_ms, pat_ms, _, ce_mib, pat_mib = map(number, cells[1:6])
            return dict(ce_ms=ce_ms, pat_ms=pat_ms, ce_mib=ce_mib,
                        pat_mib=pat_mib), None
    return None, f'no {TARGET} row in loss_speed_memory.log'


def training(work, loss, iters):
    paths = sorted(
        glob.glob(osp.join(work, loss, '*', 'vis_data', 'scalars.json')))
    if not paths:
        return None, f'no scalars.json under {osp.join(work, loss)}'
    rows = [json.loads(line) for line in open(paths[-1]) if line.strip()]
    train = [r for r in rows if 'time' in r and 'loss' in r]
    # After warm-up (cudnn autotuning, the dataloader filling up): drop the
    # rows of the first fifth of the iterations.
    kept = [r for r in train if r.get('iter', r.get('step', 0)) > iters // 5]
    kept = kept or train
    if not kept:
        return None, f'no training rows in {paths[-1]}'
    time = statistics.median(r['time'] for r in kept)
    data = statistics.median(r.get('data_time', 0.0) for r in kept)
    step = statistics.median(r['time'] - r.get('data_time', 0.0)
                             for r in kept)
    memory = max((r['memory'] for r in train if 'memory' in r), default=None)
    return dict(time=time, data=data, step=step, memory=memory,
                rows=len(kept)), None


def markdown_tables(text):
    """Every Markdown table in ``text`` as (header cells, body rows)."""
    tables, current = [], []
    for line in text.splitlines() + ['']:
        if line.strip().startswith('|'):
            current.append(
                [c.strip() for c in line.strip().strip('|').split('|')])
            continue
        if len(current) >= 3:
            tables.append((current[0], current[2:]))
        current = []
    return tables


def hook_numbers(results):
    path = osp.join(results, 'hook_overhead.log')
    if not osp.isfile(path):
        return None, 'hook_overhead.log missing'
    found = {}
    for header, body in markdown_tables(open(path).read()):
        for i, name in enumerate(header):
            low = name.lower()
            if 'hook' in low and re.search(r'\((m?s)\)', low):
                key, scale = 'hook_s', 1e-3 if '(ms)' in low else 1.0
            elif 'paired' in low and 'ratio' in low:
                key, scale = 'paired_ratio', 1.0
            else:
                continue
            values = [number(row[i]) for row in body if i < len(row)]
            values = [v * scale for v in values if v is not None]
            if values and key not in found:
                found[key] = statistics.median(values)
    if not found:
        return None, ('hook_overhead.log has no column named like '
                      '"hook ... (s)" or "paired ratio"; see the file')
    return found, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('results')
    parser.add_argument('work')
    parser.add_argument('iters', type=int)
    parser.add_argument('--title', default='')
    parser.add_argument(
        '--status', nargs='*', default=[],
        help='part=text, e.g. loss=ok hook="failed (exit 2)"')
    args = parser.parse_args()
    status = dict(s.split('=', 1) for s in args.status)
    notes = [f'{part}: {text}' for part, text in status.items()
             if text != 'ok']

    loss, why = loss_alone(args.results)
    if why and status.get('loss', 'ok') == 'ok':
        notes.append(f'loss: {why}')
    runs = {}
    for name in ('ce', 'pat'):
        if status.get(f'train_{name}', 'ok').startswith('not run'):
            runs[name] = None
            continue
        runs[name], why = training(args.work, name, args.iters)
        if why and status.get(f'train_{name}', 'ok') == 'ok':
            notes.append(f'train_{name}: {why}')
    hook, why = hook_numbers(args.results)
    if why and status.get('hook', 'ok') == 'ok':
        notes.append(f'hook: {why}')

    ce, pat = runs['ce'] or {}, runs['pat'] or {}
    lo = loss or {}
    hk = hook or {}
    crop = f'512 x 1024, batch 2, median of iterations {args.iters // 5 + 1}'\
           f'-{args.iters}'
    rows = [
        (f'loss alone, {TARGET}: forward + backward (ms)',
         lo.get('ce_ms'), lo.get('pat_ms'), 2),
        (f'loss alone, {TARGET}: peak memory (MiB)',
         lo.get('ce_mib'), lo.get('pat_mib'), 0),
        (f'SegFormer-B0 training iteration, {crop} (s)',
         ce.get('time'), pat.get('time'), 4),
        ('  of which waiting for data (s)', ce.get('data'), pat.get('data'),
         4),
        ('  step: iteration minus data wait (s)', ce.get('step'),
         pat.get('step'), 4),
        ('peak GPU memory in training (MiB, MMEngine)', ce.get('memory'),
         pat.get('memory'), 0),
    ]
    lines = []
    if args.title:
        lines += [args.title, '']
    lines += ['| measurement | CE | PAT (+ PrevPredictionHook in training) '
              '| PAT / CE |', '|---|---:|---:|---:|']
    for name, a, b, digits in rows:
        lines.append(f'| {name} | {fmt(a, digits)} | {fmt(b, digits)} | '
                     f'{fmt(ratio(b, a), 3)} |')
    lines.append(
        '| PrevPredictionHook: its own methods per iteration (s); ratio '
        'column: paired iteration ratio with / without the hook '
        '(`hook_overhead.py`) | - | '
        f"{fmt(hk.get('hook_s'), 4)} | {fmt(hk.get('paired_ratio'), 3)} |")
    if notes:
        lines += [''] + [f'- {n}' for n in notes]
    text = '\n'.join(lines) + '\n'
    with open(osp.join(args.results, 'gpu_check.md'), 'w') as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == '__main__':
    main()
