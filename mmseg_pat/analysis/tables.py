"""The tables of a loss study: one row per run, and mean ± std over the
seeds with the gain over a baseline paired by seed.

* ``runs.csv`` (:func:`write_runs_csv`): method, seed, variant, status,
  every metric including ``IoU.<class>``, seconds per iteration, final
  training loss, work dir, config, class counts, checkpoint;
* ``results.csv`` and ``results.md`` (:func:`write_results`, which
  rebuilds them from a ``runs.csv`` too): mean ± std over the seeds of
  each method, and its gain over the baseline paired by seed;
* ``curves.csv`` and ``curves.md`` (:func:`write_curves`) for runs that
  validate every N iterations: the learning curves and the gain at each
  evaluation;
* ``memory_size.md`` (:func:`memory_sizes`) for memory grids.
"""
import csv
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from .presets import MEMORY_GRIDS, METHODS, describe_loss
from .runs import (by_iteration, finished, mean_std, methods_of, paired_gains,
                   variant_of)

#: Columns of the results table, in percent except the time (seconds).
SUMMARY_METRICS = ('aAcc', 'mIoU', 'mAcc', 'head_mIoU', 'body_mIoU',
                   'tail_mIoU', 'time_per_iter')
#: Metrics whose gain over the baseline (paired by seed) is tabulated.
GAIN_METRICS = ('mIoU', 'tail_mIoU')
#: The first columns of ``runs.csv``; ``IoU.<class>`` and
#: :data:`PATH_COLUMNS` follow.
RUN_COLUMNS = ('method', 'seed', 'variant', 'status', 'aAcc', 'mIoU',
               'mAcc', 'head_mIoU', 'body_mIoU', 'tail_mIoU', 'head_mAcc',
               'body_mAcc', 'tail_mAcc', 'time_per_iter', 'final_loss',
               'iters')
PATH_COLUMNS = ('work_dir', 'config', 'class_counts', 'checkpoint')
#: The columns of ``curves.csv``: one row per evaluation of each run.
CURVE_COLUMNS = ('method', 'seed', 'variant', 'iter', 'aAcc', 'mIoU',
                 'mAcc', 'head_mIoU', 'body_mIoU', 'tail_mIoU')
#: Training images of the full data sets, and the grid of N cells a side
#: for their images' shape: the memory's size of :func:`memory_sizes`.
FULL_DATASETS = (
    ('Oxford-IIIT Pet trainval', 3680, lambda n: (n, n)),
    ('Cityscapes train', 2975, lambda n: (n, 2 * n)),
)


def summarize(rows: Sequence[Dict],
              metrics: Sequence[str] = SUMMARY_METRICS,
              baseline: Optional[str] = 'ce') -> List[Dict]:
    """Mean ± std over the seeds of each (variant, method).

    Failed runs (no evaluation) are counted but not averaged; diverged runs
    are averaged (their metrics are real) and counted. NaN values (e.g. a
    group with no class in the evaluation set) are left out of a mean. The
    std is the sample standard deviation (ddof=1), 0 for a single run.

    Args:
        rows (Sequence[dict]): Per-run rows as written to ``runs.csv``.
        metrics (Sequence[str]): The metrics to average.
            Default: :data:`SUMMARY_METRICS`.
        baseline (str, optional): Method whose results the
            :data:`GAIN_METRICS` gains are measured from, paired by seed
            (:func:`~mmseg_pat.analysis.runs.paired_gains`).
            Default: ``'ce'``.

    Returns:
        list[dict]: In order of first appearance, ``variant``, ``method``,
        ``runs``, ``failed``, ``diverged``, ``<metric>_mean`` and
        ``<metric>_std``, and ``gain_<metric>_mean`` / ``_std`` / ``_pairs``
        (the seeds paired) where the baseline ran.
    """
    groups: Dict[Tuple[str, str], List[Dict]] = {}
    for row in rows:
        key = (variant_of(row), str(row['method']))
        groups.setdefault(key, []).append(row)
    gains = {
        metric: paired_gains(rows, baseline, metric)
        for metric in GAIN_METRICS
    } if baseline else {}
    summary = []
    for (variant, method), members in groups.items():
        done = finished(members)
        entry = dict(
            variant=variant,
            method=method,
            runs=len(members),
            failed=len(members) - len(done),
            diverged=sum(r.get('status') == 'diverged' for r in members))
        for metric in metrics:
            entry[f'{metric}_mean'], entry[f'{metric}_std'] = mean_std(
                [float(r.get(metric, math.nan)) for r in done])
        for metric, by_group in gains.items():
            if (variant, method) in by_group and method != baseline:
                mean, std, pairs = by_group[(variant, method)]
                entry[f'gain_{metric}_mean'] = mean
                entry[f'gain_{metric}_std'] = std
                entry[f'gain_{metric}_pairs'] = pairs
        summary.append(entry)
    return summary


def _write_csv(path: str, rows: Sequence[Dict],
               first: Sequence[str] = ()) -> None:
    """Write ``rows`` as CSV: the ``first`` columns, then the others in
    order of appearance."""
    columns = [c for c in first if any(c in r for r in rows)]
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval='')
        writer.writeheader()
        writer.writerows(rows)


def write_runs_csv(path: str, rows: Sequence[Dict]) -> None:
    """Write the per-run table: :data:`RUN_COLUMNS`, then ``IoU.<class>``,
    then :data:`PATH_COLUMNS`."""
    iou = []
    for row in rows:
        iou += [k for k in row if k.startswith('IoU.') and k not in iou]
    columns = (*RUN_COLUMNS, *iou, *PATH_COLUMNS)
    ordered = [{k: row[k] for k in columns if k in row} for row in rows]
    _write_csv(path, ordered, first=columns)


def _mean_std(entry: Dict, key: str, digits: int) -> str:
    """A summary's ``<key>_mean ± <key>_std`` as a table cell."""
    mean, std = entry.get(f'{key}_mean'), entry.get(f'{key}_std')
    if mean is None or math.isnan(mean):
        return 'n/a'
    # a spread needs two values: two runs, or two seeds paired with CE
    values = entry.get(f'{key}_pairs', entry['runs'] - entry['failed'])
    if values > 1:
        return f'{mean:.{digits}f} ± {std:.{digits}f}'
    return f'{mean:.{digits}f}'


def markdown_table(summary: Sequence[Dict],
                   baseline: Optional[str] = 'ce') -> str:
    """The results table in Markdown: one row per (variant, method)."""
    has_variant = any(e['variant'] for e in summary)
    header = (['variant'] if has_variant else []) + [
        'method', 'loss', 'runs', 'aAcc', 'mIoU', 'mAcc', 'head mIoU',
        'body mIoU', 'tail mIoU'
    ]
    gain = baseline and any(f'gain_{GAIN_METRICS[0]}_mean' in e
                            for e in summary)
    if gain:
        header += [f'Δ {m.replace("_", " ")} vs {baseline}'
                   for m in GAIN_METRICS]
    header.append('s / iter')
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join(['---'] * (2 + has_variant) +
                            ['---:'] * (len(header) - 2 - has_variant)) + '|']
    for entry in summary:
        runs = str(entry['runs'])
        notes = [f'{entry[k]} {k}' for k in ('failed', 'diverged')
                 if entry[k]]
        if notes:
            runs += f' ({", ".join(notes)})'
        loss = METHODS.get(entry['method'])
        cells = ([entry['variant']] if has_variant else []) + [
            entry['method'], f'`{describe_loss(loss)}`' if loss else '', runs
        ]
        cells += [_mean_std(entry, m, 2) for m in SUMMARY_METRICS[:-1]]
        if gain:
            cells += [_mean_std(entry, f'gain_{m}', 2)
                      if f'gain_{m}_mean' in entry else '—'
                      for m in GAIN_METRICS]
        cells.append(_mean_std(entry, 'time_per_iter', 3))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def pooled(rows: Sequence[Dict], name: str = 'all') -> List[Dict]:
    """The runs of every variant as one variant, ``name``; each run's seed
    becomes ``<variant>/<seed>``, so gains stay paired by variant and
    seed."""
    return [
        dict(r, variant=name, seed=f'{variant_of(r)}/{r.get("seed", "")}')
        for r in rows
    ]


def write_results(out_dir: str,
                  rows: Sequence[Dict],
                  preset: str,
                  baseline: Optional[str] = 'ce',
                  pool_variants: bool = False) -> List[Dict]:
    """Write ``results.csv`` and ``results.md`` of a study's runs.

    Args:
        out_dir (str): The study's folder.
        rows (Sequence[dict]): Per-run rows, e.g.
            :func:`~mmseg_pat.analysis.runs.load_runs` of its
            ``runs.csv``.
        preset (str): The preset's name, for the table's caption.
        baseline (str, optional): See :func:`summarize`. Default: 'ce'.
        pool_variants (bool): Add the rows of all variants together
            (variant ``'all'``, :func:`pooled`): mean ± std over variants
            and seeds. Default: False.

    Returns:
        list[dict]: The summary rows (:func:`summarize`).
    """
    summary = summarize(rows, baseline=baseline)
    if pool_variants:
        summary += summarize(pooled(rows), baseline=baseline)
    _write_csv(osp.join(out_dir, 'results.csv'), summary)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(f'Preset `{preset}`, {len(rows)} runs; metrics in '
                '% (mean ± std over seeds), s / iter: median after '
                'warm-up.\n\n' + markdown_table(summary, baseline))
    return summary


def write_curves(out_dir: str,
                 points: Sequence[Dict],
                 baseline: str = 'ce',
                 metrics: Sequence[str] = GAIN_METRICS) -> None:
    """Write ``curves.csv`` (every evaluation of every run) and
    ``curves.md``: per metric and iteration, each method's mean ± std over
    the seeds and its gain over the baseline, paired by seed.

    Args:
        out_dir (str): The study's folder.
        points (Sequence[dict]): Learning-curve rows
            (:func:`~mmseg_pat.analysis.runs.collect_curves`).
        baseline (str): Method the gains are measured from. Default: 'ce'.
        metrics (Sequence[str]): One table per metric.
            Default: :data:`GAIN_METRICS`.
    """
    _write_csv(osp.join(out_dir, 'curves.csv'), points, first=CURVE_COLUMNS)
    lines = []
    for variant in dict.fromkeys(map(variant_of, points)):
        members = [p for p in points if variant_of(p) == variant]
        summary = summarize(by_iteration(members), metrics, baseline)
        methods = methods_of(members)
        others = [m for m in methods if m != baseline]
        for metric in metrics:
            name = metric.replace('_', ' ')
            lines += [
                f'{name}{f", {variant}" if variant else ""} (mean ± std '
                'over seeds; Δ: paired by seed)', '',
                '| iteration | ' + ' | '.join(methods + [
                    f'Δ {m} vs {baseline}' for m in others]) + ' |',
                '|---:|' + '---:|' * (len(methods) + len(others))
            ]
            entries = {(e['variant'], e['method']): e for e in summary}
            for step in sorted({e['variant'] for e in summary}, key=int):
                cells = [
                    _mean_std(entries[(step, m)], metric, 2)
                    if (step, m) in entries else 'n/a' for m in methods
                ]
                cells += [
                    _mean_std(entries[(step, m)], f'gain_{metric}', 2)
                    if f'gain_{metric}_mean' in entries.get((step, m), {})
                    else 'n/a' for m in others
                ]
                lines.append(f'| {step} | ' + ' | '.join(cells) + ' |')
            lines.append('')
    with open(osp.join(out_dir, 'curves.md'), 'w') as f:
        f.write('\n'.join(lines))


def memory_sizes(grids: Sequence[int] = MEMORY_GRIDS) -> str:
    """The memory's size per grid for the full data sets, in Markdown.

    One copy: ``rows x cols`` bytes per training image, as
    ``memory_dir/memory.u8`` on disk, in each checkpoint and on the
    device (:data:`FULL_DATASETS`).
    """
    header = ['cells a side'] + [
        f'{name} ({images} images)' for name, images, _ in FULL_DATASETS
    ]
    lines = [
        '| ' + ' | '.join(header) + ' |',
        '|---:|' + '---:|' * len(FULL_DATASETS)
    ]
    for n in grids:
        cells = [str(n)]
        for _, images, shape in FULL_DATASETS:
            rows, cols = shape(n)
            cells.append(f'{rows} x {cols}: '
                         f'{images * rows * cols / 2**20:.1f} MiB')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'
