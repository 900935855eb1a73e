"""Read training runs back, and the statistics of a study over seeds.

A run is the work dir of ``tools/train.py`` evaluated at the end by
``LongTailIoUMetric``; :func:`read_run` turns it into one row of metrics
and paths, as written to a study's ``runs.csv`` (:func:`load_runs` reads
that table back); :func:`read_curve` gives every evaluation of a run that
validated during training (a learning curve). :func:`mean_std` and
:func:`paired_gains` aggregate the rows over seeds.
"""
import csv
import json
import math
import os
import os.path as osp
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np
from mmengine.config import Config

from mmseg_pat.stack import load_config

_LOG_DIR = re.compile(r'^\d{8}_\d{6}$')
_NOT_METRICS = ('time', 'data_time', 'step')
_LOG_PREFIX = re.compile(r'^\S+ \S+ - mmengine - [A-Z]+ - ')
_REPORT_START = 'per class results:'
_TEXT_COLUMNS = ('method', 'variant', 'status', 'work_dir', 'config',
                 'class_counts', 'checkpoint')


def _latest_log_dir(work_dir: str) -> str:
    """The newest ``<timestamp>`` folder of a work dir that has scalars."""
    names = sorted(
        n for n in (os.listdir(work_dir) if osp.isdir(work_dir) else [])
        if _LOG_DIR.match(n)
        and osp.isfile(osp.join(work_dir, n, 'vis_data', 'scalars.json')))
    if not names:
        raise FileNotFoundError(
            f'no training log (<timestamp>/vis_data/scalars.json) in '
            f'{work_dir}')
    return osp.join(work_dir, names[-1])


def _class_counts_path(cfg: Config) -> str:
    """The class-counts JSON named by the config's LongTailIoUMetric."""
    evaluators = cfg.get('val_evaluator') or []
    for evaluator in (evaluators
                      if isinstance(evaluators, list) else [evaluators]):
        counts = evaluator.get('class_counts')
        if isinstance(counts, str):
            return counts
    return ''


def _find_relative(path: str, work_dir: str) -> str:
    """``path`` as given if it exists; a relative path that does not (it
    was relative to the training's working directory: runs planned by
    earlier versions of the study) is looked for under each folder above
    ``work_dir``."""
    if not path or osp.isabs(path) or osp.isfile(path):
        return path
    folder = osp.abspath(work_dir)
    while True:
        if osp.isfile(osp.join(folder, path)):
            return osp.join(folder, path)
        parent = osp.dirname(folder)
        if parent == folder:
            return path
        folder = parent


def _read_scalars(work_dir: str) -> Tuple[str, List[Dict]]:
    """The newest log folder of a run and the records of its
    ``vis_data/scalars.json``."""
    log_dir = _latest_log_dir(work_dir)
    with open(osp.join(log_dir, 'vis_data', 'scalars.json')) as f:
        return log_dir, [json.loads(line) for line in f if line.strip()]


def _evaluations(records: Sequence[Dict]) -> List[Dict]:
    """The evaluation records of a log (training records have ``iter``)."""
    return [r for r in records if 'mIoU' in r and 'iter' not in r]


def read_run(work_dir: str, warmup_fraction: float = 0.1) -> Dict:
    """Metrics of a training run, from its work dir.

    Reads the newest ``<timestamp>/vis_data/scalars.json`` (the last
    evaluation and the training log) and ``config.py`` beside it.

    Args:
        work_dir (str): The run's work dir.
        warmup_fraction (float): Share of the iterations left out of the
            time per iteration. Default: 0.1.

    Returns:
        dict: The evaluation's metrics as logged (``aAcc``, ``mIoU``,
        ``tail_mIoU``, ``IoU.<class>``, ...) plus ``time_per_iter`` (median
        of the logged ``time`` after the warm-up, seconds), ``final_loss``
        (last logged training loss), ``iters``, and the paths
        ``work_dir``, ``config``, ``class_counts`` ('' if none) and
        ``checkpoint`` ('' if none).

    Raises:
        FileNotFoundError: If the work dir has no training log.
        ValueError: If the log has no evaluation.
    """
    log_dir, records = _read_scalars(work_dir)
    train = [r for r in records if 'iter' in r]
    evaluations = _evaluations(records)
    if not evaluations:
        raise ValueError(f'{log_dir}: the log has no evaluation (mIoU); did '
                         'the training finish?')
    result = {
        k: v
        for k, v in evaluations[-1].items() if k not in _NOT_METRICS
    }
    last_iter = train[-1]['iter'] if train else 0
    times = [r['time'] for r in train
             if r['iter'] > warmup_fraction * last_iter
             ] or [r['time'] for r in train]
    config = osp.join(log_dir, 'vis_data', 'config.py')
    checkpoint = ''
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()
        moved = osp.join(work_dir, osp.basename(checkpoint))
        if not osp.isfile(checkpoint) and osp.isfile(moved):
            checkpoint = moved  # the work dir was moved or renamed
    result.update(
        time_per_iter=float(np.median(times)) if times else math.nan,
        final_loss=float(train[-1].get('loss', math.nan))
        if train else math.nan,
        iters=last_iter,
        work_dir=osp.abspath(work_dir),
        config=config,
        class_counts=_find_relative(
            _class_counts_path(
                load_config(config, import_custom_modules=False)),
            work_dir),
        checkpoint=checkpoint)
    return result


def read_curve(work_dir: str) -> List[Dict]:
    """Every evaluation of a run, in order: its learning curve.

    Args:
        work_dir (str): The run's work dir (validated every N iterations,
            e.g. ``train_cfg.val_interval=100``).

    Returns:
        list[dict]: ``iter`` (the training iteration of the evaluation) and
        the metrics as logged (``mIoU``, ``tail_mIoU``, ``IoU.<class>``,
        ...), one per evaluation.

    Raises:
        FileNotFoundError: If the work dir has no training log.
    """
    _, records = _read_scalars(work_dir)
    return [
        dict(iter=r['step'],
             **{k: v
                for k, v in r.items() if k not in _NOT_METRICS})
        for r in _evaluations(records)
    ]


def collect_curves(rows: Sequence[Dict]) -> List[Dict]:
    """The learning curves of the runs that evaluated more than once.

    Args:
        rows (Sequence[dict]): Per-run rows with ``work_dir``; runs that
            failed, whose work dir is gone or that evaluated once are left
            out.

    Returns:
        list[dict]: One row per (run, evaluation): ``method``, ``seed``,
        ``variant``, then :func:`read_curve`'s ``iter`` and metrics.
    """
    points = []
    for row in finished(rows):
        work_dir = str(row.get('work_dir') or '')
        if not osp.isdir(work_dir):
            continue
        try:
            curve = read_curve(work_dir)
        except FileNotFoundError:
            continue
        if len(curve) > 1:
            points += [
                dict(
                    method=row['method'],
                    seed=row.get('seed', ''),
                    variant=variant_of(row),
                    **point) for point in curve
            ]
    return points


def evaluation_report(work_dir: str) -> str:
    """The last evaluation report in a run's log, without the log prefixes.

    From MMSeg's per-class table to the metrics line: with
    ``LongTailIoUMetric``, the head / body / tail table is in between.

    Raises:
        FileNotFoundError: If the work dir has no training log.
        ValueError: If the log has no evaluation report.
    """
    log_dir = _latest_log_dir(work_dir)
    path = osp.join(log_dir, osp.basename(log_dir) + '.log')
    with open(path) as f:
        lines = [_LOG_PREFIX.sub('', line.rstrip('\n')) for line in f]
    starts = [i for i, line in enumerate(lines) if line == _REPORT_START]
    if not starts:
        raise ValueError(f'{path} has no evaluation report')
    report = lines[starts[-1]:]
    ends = [i for i, line in enumerate(report) if line.startswith('Iter(val)')
            and 'mIoU' in line]
    return '\n'.join(report[:ends[0] + 1] if ends else report)


def _number(text: str):
    """``text`` as an int or a float if it is one, NaN if empty, else
    unchanged."""
    if not text:
        return math.nan
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def load_runs(path: str) -> List[Dict]:
    """Read a per-run table (``runs.csv``): numbers as numbers, empty
    metrics as NaN."""
    with open(path, newline='') as f:
        return [{
            k: v if k in _TEXT_COLUMNS else _number(v)
            for k, v in row.items()
        } for row in csv.DictReader(f)]


def collect_runs(inputs: Sequence[str]) -> List[Dict]:
    """Rows of ``runs.csv`` files and of work dirs given as
    ``[NAME=]WORK_DIR`` (the method's name; default: the folder's)."""
    rows = []
    for item in inputs:
        if item.endswith('.csv'):
            rows += load_runs(item)
            continue
        name, work_dir = '', item
        if not osp.isdir(item) and '=' in item:
            name, work_dir = item.split('=', 1)
        name = name or osp.basename(osp.normpath(work_dir))
        rows.append(dict(method=name, status='ok', **read_run(work_dir)))
    return rows


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of the non-NaN values;
    the std is 0 for a single value, both are NaN for none."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not values.size:
        return math.nan, math.nan
    return float(values.mean()), (float(values.std(ddof=1))
                                  if values.size > 1 else 0.0)


def finished(rows: Sequence[Dict]) -> List[Dict]:
    """The runs that did not fail (diverged runs included)."""
    return [r for r in rows if r.get('status', 'ok') != 'failed']


def variant_of(row: Dict) -> str:
    """A run's variant, ``''`` for none."""
    return str(row.get('variant') or '')


def by_iteration(points: Sequence[Dict]) -> List[Dict]:
    """Learning-curve rows of one variant with each evaluation's iteration
    as their variant, so that :func:`paired_gains` (and the study's
    summary) pair them by iteration and seed."""
    return [dict(p, variant=str(int(p['iter']))) for p in points]


def methods_of(rows: Sequence[Dict]) -> List[str]:
    """Methods in order of first appearance."""
    return list(dict.fromkeys(r['method'] for r in rows))


def paired_gains(rows: Sequence[Dict], baseline: str,
                 metric: str) -> Dict[Tuple[str, str], Tuple[float, float,
                                                             int]]:
    """Gain of each method over the baseline, paired by variant and seed.

    Args:
        rows (Sequence[dict]): Per-run rows (``method``, ``seed``,
            ``variant``, the metric); failed runs are left out.
        baseline (str): The method gains are measured from.
        metric (str): E.g. ``'tail_mIoU'``.

    Returns:
        dict: ``(variant, method) -> (mean, std, n)`` of the differences
        ``metric(method, seed) - metric(baseline, seed)`` over the n seeds
        where both ran with a finite value (std with ddof=1, 0 if n = 1).
        A baseline run with no variant is the baseline of every variant
        that has none of its own (e.g. CE, which keeps no memory, for each
        memory grid of PAT). The baseline itself and methods with no pair
        are left out.
    """
    rows = finished(rows)
    base = {(variant_of(r), str(r.get('seed', ''))): float(r[metric])
            for r in rows if r['method'] == baseline and metric in r}
    diffs: Dict[Tuple[str, str], List[float]] = {}
    for row in rows:
        seed = str(row.get('seed', ''))
        reference = base.get((variant_of(row), seed), base.get(('', seed)))
        if (row['method'] == baseline or reference is None
                or metric not in row):
            continue
        diff = float(row[metric]) - reference
        if not math.isnan(diff):
            diffs.setdefault((variant_of(row), row['method']), []).append(diff)
    return {key: (*mean_std(d), len(d)) for key, d in diffs.items()}


def slug(text: str) -> str:
    """``text`` fit for a file name: ``'imbalance_ratio=5'`` ->
    ``'imbalance_ratio_5'``."""
    return re.sub(r'[^A-Za-z0-9.]+', '_', text).strip('_')
