"""Read back training runs and draw the plots of the loss study.

Works on the per-run table ``runs.csv`` written by ``loss_study.py`` or on
any work dirs of ``tools/train.py`` (each evaluated at the end by
``LongTailIoUMetric``), so users plot their own runs::

    python tools/analysis/plot_study.py work_dirs/demo/runs.csv --out plots
    python tools/analysis/plot_study.py ce=work_dirs/ce pat=work_dirs/pat \\
        --out plots

Plots (PNG, drawn by matplotlib's Agg canvas without pyplot, so importing
this module changes no backend):

* ``per_class_iou*.png``: per-class IoU of each method (mean ± std over
  seeds), classes from head to tail by training pixel frequency;
* ``weighting_curves.png``: PAT's weighting curves beta(q) (arXiv
  2404.05393), ``'ina'`` for C = 3, 13, 19 and ``'inap'``;
* ``pat_weights_example.png``: one validation image, its label, the
  predictions of the baseline and of PAT, and PAT's weights from the PAT
  model's own confidence of the true class;
* ``gain_vs_<variant>.png``: gain over the baseline (paired by seed) of the
  tail mIoU and the mIoU against a numeric variant such as the imbalance
  ratio of the generated data.
"""
import argparse
import csv
import json
import math
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullLocator
from mmengine.config import Config

# Run from a checkout without installing: make ``import mmseg_pat`` work.
sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmseg_pat.datasets.class_statistics import (  # noqa: E402
    FREQUENCY_GROUPS, frequency_groups, load_class_counts)
from mmseg_pat.models.losses import PATLoss, pat_weights  # noqa: E402
from mmseg_pat.models.losses.pat import HOMOGENIZE_POWERS  # noqa: E402

_LOG_DIR = re.compile(r'^\d{8}_\d{6}$')
_NOT_METRICS = ('time', 'data_time', 'step')
_LOG_PREFIX = re.compile(r'^\S+ \S+ - mmengine - [A-Z]+ - ')
_REPORT_START = 'per class results:'
_TEXT_COLUMNS = ('method', 'variant', 'status', 'work_dir', 'config',
                 'class_counts', 'checkpoint')
_GROUP_COLOURS = dict(head='#dbe9f6', body='#f2f2f2', tail='#fbe3d6')


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
    was relative to the training's working directory: runs trained before
    ``resolve_class_counts`` wrote absolute paths) is looked for under each
    folder above ``work_dir``."""
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
    log_dir = _latest_log_dir(work_dir)
    with open(osp.join(log_dir, 'vis_data', 'scalars.json')) as f:
        records = [json.loads(line) for line in f if line.strip()]
    train = [r for r in records if 'iter' in r]
    evaluations = [r for r in records if 'mIoU' in r and 'iter' not in r]
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
                Config.fromfile(config, import_custom_modules=False)),
            work_dir),
        checkpoint=checkpoint)
    return result


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
        The baseline itself and methods with no pair are left out.
    """
    rows = finished(rows)
    base = {(variant_of(r), str(r.get('seed', ''))): float(r[metric])
            for r in rows if r['method'] == baseline and metric in r}
    diffs: Dict[Tuple[str, str], List[float]] = {}
    for row in rows:
        key = (variant_of(row), str(row.get('seed', '')))
        if row['method'] == baseline or key not in base or metric not in row:
            continue
        diff = float(row[metric]) - base[key]
        if not math.isnan(diff):
            diffs.setdefault((variant_of(row), row['method']), []).append(diff)
    return {key: (*mean_std(d), len(d)) for key, d in diffs.items()}


def _methods(rows: Sequence[Dict]) -> List[str]:
    """Methods in order of first appearance."""
    return list(dict.fromkeys(r['method'] for r in rows))


def plot_per_class_iou(rows: Sequence[Dict],
                       out_path: str,
                       class_counts: Optional[str] = None,
                       title: Optional[str] = None) -> str:
    """Bar chart of each method's per-class IoU, head to tail.

    Args:
        rows (Sequence[dict]): Per-run rows with ``IoU.<class>`` columns;
            the runs of a method are averaged (error bar: std).
        out_path (str): The PNG to write.
        class_counts (str, optional): Class-counts JSON of the training set;
            classes are sorted by its pixel counts and shaded by frequency
            group. Default: None (the columns' order, no groups).
        title (str, optional): Figure title. Default: None.

    Returns:
        str: ``out_path``.
    """
    rows = finished(rows)
    names = [k[4:] for k in rows[0] if k.startswith('IoU.')] if rows else []
    if not names:
        raise ValueError('no per-class IoU (IoU.<class> columns) to plot')
    shares, group_of = {}, {}
    if class_counts and osp.isfile(class_counts):
        with open(class_counts) as f:
            classes = json.load(f)['classes']
        counts = load_class_counts(class_counts, len(classes))
        shares = dict(zip(classes, counts / max(counts.sum(), 1) * 100))
        for group, index in frequency_groups(counts).items():
            group_of.update({classes[i]: group for i in index})
        names = [classes[i] for i in np.argsort(-counts, kind='stable')
                 if classes[i] in names]
    methods = _methods(rows)
    fig = Figure(
        figsize=(max(6.0, len(names) * (0.4 + 0.25 * len(methods)) + 3), 4.5))
    ax = fig.subplots()
    width = 0.8 / len(methods)
    x = np.arange(len(names))
    for i, method in enumerate(methods):
        mean, std = np.array([
            mean_std([
                float(r.get(f'IoU.{n}', math.nan)) for r in rows
                if r['method'] == method
            ]) for n in names
        ]).T
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, mean, width,
               yerr=std if np.nansum(std) > 0 else None, capsize=2,
               label=method)
    for group in FREQUENCY_GROUPS:
        index = [i for i, n in enumerate(names) if group_of.get(n) == group]
        if index:
            ax.axvspan(min(index) - 0.5, max(index) + 0.5, zorder=-1,
                       color=_GROUP_COLOURS[group])
            ax.text((min(index) + max(index)) / 2, 101, group, ha='center',
                    va='bottom', fontsize=9)
    ax.set_xticks(x)
    ax.set_xticklabels([
        f'{n}\n{shares[n]:.2g}%' if n in shares else n for n in names])
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylim(0, 108)
    ax.set_ylabel('IoU (%)')
    ax.set_xlabel('class (share of the training pixels), most to least '
                  'frequent' if shares else 'class')
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1))
    if title:
        ax.set_title(title, pad=18)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    return out_path


def plot_weighting_curves(out_path: str,
                          num_classes: Sequence[int] = (3, 13, 19)) -> str:
    """PAT's weighting curves beta(q) = exp(kappa (1 - q)) / 2, log scale.

    Args:
        out_path (str): The PNG to write.
        num_classes (Sequence[int]): Class counts C of the ``'ina'`` curves
            (kappa = C). Default: (3, 13, 19) (Oxford-IIIT Pet, NYUv2,
            Cityscapes).

    Returns:
        str: ``out_path``.
    """
    q = torch.linspace(0, 1, 201)
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    for c in num_classes:
        ax.plot(q, pat_weights(q, c, 'ina'),
                label=rf"'ina' ($\kappa$ = C = {c})")
    ax.plot(q, pat_weights(q, max(num_classes), 'inap'), 'k--',
            label=r"'inap' ($\kappa$ = 1, any C)")
    ax.axhline(0.5, color='grey', lw=0.8, ls=':')
    ax.set_yscale('log')
    ax.set_xlabel('confidence q of the true class')
    ax.set_ylabel(r'$\beta(q) = \frac{1}{2}\,e^{\kappa(1-q)}$')
    ax.set_title('PAT weighting curves: learn what is not known, keep half '
                 'of what is', fontsize=9)
    ax.legend()
    ax.grid(True, which='major', alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    return out_path


def _groups_of_run(run: Dict) -> Dict[str, List[int]]:
    if run.get('class_counts') and osp.isfile(run['class_counts']):
        return frequency_groups(run['class_counts'])
    return dict(head=[], body=[], tail=[])


def _most_tail_pixels(dataset, tail: Sequence[int],
                      max_candidates: int) -> int:
    """Index of the validation image with the most tail-class pixels."""
    best, best_count = 0, -1
    for i in range(min(len(dataset), max_candidates)):
        label = dataset[i]['data_samples'].gt_sem_seg.data
        count = int(sum((label == c).sum() for c in tail))
        if count > best_count:
            best, best_count = i, count
    return best


def plot_weight_map(baseline_run: Dict,
                    pat_run: Dict,
                    out_path: str,
                    names: Tuple[str, str] = ('ce', 'pat'),
                    image_index: Optional[int] = None,
                    device: str = 'cpu',
                    max_candidates: int = 200) -> str:
    """One validation image: label, both predictions and PAT's weights.

    The weights are those PAT would give this image now: beta from the PAT
    model's own confidence q of the true class (its curve and
    ``max_log_weight``), divided as its ``homogenize`` says (by the
    class's pixel count in the image, its square root, or nothing), over
    the mean weight of the valid pixels.

    Args:
        baseline_run (dict): :func:`read_run` of the baseline's work dir.
        pat_run (dict): :func:`read_run` of the PAT run's work dir.
        out_path (str): The PNG to write.
        names (tuple[str, str]): Names of the two methods.
            Default: ('ce', 'pat').
        image_index (int, optional): Index in the validation set. Default:
            None (the one with the most tail-class pixels among the first
            ``max_candidates``).
        device (str): Where the models run. Default: 'cpu'.
        max_candidates (int): See ``image_index``. Default: 200.

    Returns:
        str: ``out_path``.
    """
    from mmengine.registry import init_default_scope
    from mmseg.apis import inference_model, init_model
    from mmseg.registry import DATASETS

    from mmseg_pat.utils import trusted_checkpoints

    for run in (baseline_run, pat_run):
        if not run.get('checkpoint') or not osp.isfile(run['checkpoint']):
            raise FileNotFoundError(
                f'no checkpoint in {run.get("work_dir")}: the weight map '
                'needs both trained models')
    cfg = Config.fromfile(pat_run['config'])
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    if image_index is None:
        image_index = _most_tail_pixels(dataset,
                                        _groups_of_run(pat_run)['tail'],
                                        max_candidates)
    sample = dataset[image_index]['data_samples']
    label = sample.gt_sem_seg.data[0]
    predictions = {}
    for name, run in zip(names, (baseline_run, pat_run)):
        # the study's own checkpoints: MMEngine's pickles, on torch >= 2.6
        with trusted_checkpoints([osp.dirname(run['checkpoint'])]):
            model = init_model(Config.fromfile(run['config']),
                               run['checkpoint'], device=device)
        predictions[name] = inference_model(model, sample.img_path)

    logits = predictions[names[1]].seg_logits.data.float().cpu()
    num_classes = logits.shape[0]
    ignore_index = cfg.val_evaluator.get('ignore_index', 255) if isinstance(
        cfg.val_evaluator, dict) else 255
    valid = label != ignore_index
    index = torch.where(valid, label, 0).long()
    q = logits.softmax(0).gather(0, index[None])[0]
    losses = cfg.model.decode_head.loss_decode
    losses = losses if isinstance(losses, (list, tuple)) else [losses]
    loss_cfg = next((dict(c) for c in losses if c['type'] == 'PATLoss'),
                    None)
    if loss_cfg is None:
        raise ValueError(f'{pat_run["work_dir"]}: the decode head has no '
                         'PATLoss; pass the PAT run second')
    loss_cfg.pop('type')
    loss = PATLoss(**loss_cfg)  # its options, defaults included
    beta = pat_weights(q, num_classes, loss.curve, loss.max_log_weight)
    # w_i = beta_i / n_{y_i} ** p, n_k: valid pixels of class k
    counts = torch.bincount(index[valid], minlength=num_classes).clamp(min=1)
    divisor = counts.float().pow(HOMOGENIZE_POWERS[loss.homogenize])
    weight = beta / divisor[index]
    weight = weight / weight[valid].mean()
    weight_title = {
        'class': r'($\beta$ divided by its class area)',
        'sqrt': r'($\beta$ divided by $\sqrt{\mathrm{class\ area}}$)',
        'none': r"($w = \beta$: homogenize='none')"
    }[loss.homogenize]

    # Distinct colours (datasets' palettes may hold white, the colour of
    # ignored pixels here).
    palette = colormaps['tab10' if num_classes <= 10 else 'tab20'](
        np.arange(num_classes) % 20)
    cmap = ListedColormap(palette)
    image = imread(sample.img_path)

    def show_labels(ax, labels, title):
        shown = np.ma.masked_where(~valid.numpy(), labels.numpy())
        ax.set_facecolor('white')
        ax.imshow(shown, cmap=cmap, vmin=-0.5, vmax=num_classes - 0.5,
                  interpolation='nearest')
        ax.set_title(title, fontsize=9)

    fig = Figure(figsize=(11, 7.5))
    axes = fig.subplots(2, 3)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title(f'validation image {image_index}', fontsize=9)
    show_labels(axes[0, 1], label, 'label (white: ignored)')
    for ax, name in zip((axes[0, 2], axes[1, 0]), names):
        show_labels(ax, predictions[name].pred_sem_seg.data[0].cpu(),
                    f'{name} prediction')
    for ax, values, title in (
        (axes[1, 1], beta, r'PAT $\beta = \frac{1}{2}e^{\kappa(1-q)}$, '
         "q: the PAT model's\nconfidence of the true class"),
        (axes[1, 2], weight,
         r'PAT weight $w_i$ / mean $w$' + '\n' + weight_title),
    ):
        shown = np.ma.masked_where(~valid.numpy(), values.numpy())
        positive = values[valid]
        lo = max(float(positive.min()), 1e-6)
        hi = max(float(positive.max()), lo * 10)
        im = ax.imshow(shown, cmap='magma', norm=LogNorm(lo, hi),
                       interpolation='nearest')
        ax.set_facecolor('white')
        ax.set_title(title, fontsize=9)
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        bar.ax.yaxis.set_minor_locator(NullLocator())
        bar.set_ticks(np.geomspace(lo, hi, 5))
        bar.ax.yaxis.set_major_formatter(
            FuncFormatter(lambda v, _: f'{v:.2g}'))
    for ax in axes.flat:
        ax.set_axis_off()
    classes = dataset.metainfo['classes']
    fig.legend(
        handles=[Patch(color=palette[i], label=classes[i])
                 for i in range(num_classes)],
        loc='lower center', ncol=min(num_classes, 8), fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out_path, dpi=110)
    return out_path


def parse_variant(variant: str) -> Tuple[str, float]:
    """``'imbalance_ratio=25'`` -> ``('imbalance_ratio', 25.0)``.

    Raises:
        ValueError: If the variant is not one numeric ``key=value``.
    """
    match = re.fullmatch(r'([^=,]+)=([^=,]+)', variant)
    try:
        return match.group(1), float(match.group(2))
    except (AttributeError, ValueError):
        raise ValueError(f'variant {variant!r} is not key=<number>') from None


def plot_gain_vs_variant(rows: Sequence[Dict],
                         out_path: str,
                         baseline: str = 'ce',
                         metrics: Sequence[str] = ('tail_mIoU',
                                                   'mIoU')) -> str:
    """Gain of each method over the baseline against a numeric variant.

    Args:
        rows (Sequence[dict]): Per-run rows whose ``variant`` is
            ``key=<number>`` (e.g. ``imbalance_ratio=25``).
        out_path (str): The PNG to write.
        baseline (str): The method gains are measured from (paired by seed,
            :func:`paired_gains`). Default: 'ce'.
        metrics (Sequence[str]): One panel per metric.
            Default: ('tail_mIoU', 'mIoU').

    Returns:
        str: ``out_path``.
    """
    key = parse_variant(variant_of(rows[0]))[0]
    fig = Figure(figsize=(5 * len(metrics), 4))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        gains = paired_gains(rows, baseline, metric)
        for method in _methods(rows):
            points = sorted((parse_variant(v)[1], g) for (v, m), g in
                            gains.items() if m == method)
            if not points:
                continue
            x = [p[0] for p in points]
            ax.errorbar(x, [p[1][0] for p in points],
                        yerr=[p[1][1] for p in points], marker='o',
                        capsize=3, label=method)
        ax.axhline(0, color='grey', lw=0.8)
        ax.set_xscale('log')
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(sorted({parse_variant(v)[1] for v, _ in gains}))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:g}'))
        ax.set_xlabel(key.replace('_', ' '))
        ax.set_ylabel(f'{metric.replace("_", " ")} gain over {baseline} '
                      '(points)')
        ax.legend()
        ax.grid(True, alpha=0.3)
    fig.suptitle(f'gain over {baseline}, paired by seed (mean ± std)',
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    return out_path


def slug(text: str) -> str:
    """``text`` fit for a file name: ``'imbalance_ratio=5'`` ->
    ``'imbalance_ratio_5'``."""
    return re.sub(r'[^A-Za-z0-9.]+', '_', text).strip('_')


def _example_pair(rows: Sequence[Dict], baseline: str,
                  pat: str) -> Optional[Tuple[Dict, Dict]]:
    """Baseline and PAT runs with checkpoints, same seed, of the last
    variant that has both."""
    with_checkpoint = [
        r for r in finished(rows)
        if r.get('checkpoint') and osp.isfile(str(r['checkpoint']))
    ]
    for variant in reversed(list(dict.fromkeys(map(variant_of, rows)))):
        runs = {(r['method'], str(r.get('seed', ''))): r
                for r in with_checkpoint if variant_of(r) == variant}
        seeds = sorted(s for m, s in runs if m == pat
                       and (baseline, s) in runs)
        if seeds:
            return runs[(baseline, seeds[0])], runs[(pat, seeds[0])]
    return None


def plot_study(rows: Sequence[Dict],
               out_dir: str,
               baseline: str = 'ce',
               pat: str = 'pat') -> List[str]:
    """Draw every plot the runs allow; their paths.

    Per-class IoU for each variant, the weighting curves, the weight map
    when the baseline and PAT runs have checkpoints, and the gain against
    the variant when there are several numeric variants.
    """
    os.makedirs(out_dir, exist_ok=True)
    variants = list(dict.fromkeys(map(variant_of, rows)))
    paths = []
    for variant in variants:
        members = [r for r in finished(rows) if variant_of(r) == variant]
        if not members:
            continue
        counts = next((str(r['class_counts']) for r in members
                       if r.get('class_counts')), None)
        name = f'per_class_iou_{slug(variant)}.png' if len(
            variants) > 1 else 'per_class_iou.png'
        title = 'per-class IoU' + (f', {variant}' if variant else '')
        paths.append(
            plot_per_class_iou(members, osp.join(out_dir, name), counts,
                               title))
    paths.append(
        plot_weighting_curves(osp.join(out_dir, 'weighting_curves.png')))
    pair = _example_pair(rows, baseline, pat)
    if pair is not None:
        paths.append(
            plot_weight_map(*pair, osp.join(out_dir,
                                            'pat_weights_example.png'),
                            names=(baseline, pat)))
    try:
        key = {parse_variant(v)[0] for v in variants}
    except ValueError:
        key = set()
    if len(variants) > 1 and len(key) == 1:
        paths.append(
            plot_gain_vs_variant(
                rows, osp.join(out_dir, f'gain_vs_{key.pop()}.png'),
                baseline))
    return paths


def _rows_of(inputs: Sequence[str]) -> List[Dict]:
    """Rows of ``runs.csv`` files and of ``[NAME=]WORK_DIR`` arguments."""
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


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    parser = argparse.ArgumentParser(
        description='Plot the results of a loss study or of any runs')
    parser.add_argument(
        'inputs',
        nargs='+',
        help='runs.csv of loss_study.py, or work dirs as [NAME=]WORK_DIR')
    parser.add_argument('--out', required=True, help='folder of the PNGs')
    parser.add_argument('--baseline', default='ce')
    parser.add_argument('--pat', default='pat', help='the PAT method')
    args = parser.parse_args(argv)
    paths = plot_study(_rows_of(args.inputs), args.out, args.baseline,
                       args.pat)
    for path in paths:
        print(path)
    return paths


if __name__ == '__main__':
    main()
