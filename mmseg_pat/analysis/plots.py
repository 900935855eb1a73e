"""The plots of a loss study's results, from its per-run rows or from any
runs.

PNG files, drawn by matplotlib's Agg canvas without pyplot, so importing
this module changes no backend. :func:`plot_study` draws every plot the
runs allow:

* ``per_class_iou*.png``: per-class IoU of each method (mean ± std over
  seeds), classes from head to tail by training pixel frequency;
* ``weighting_curves.png`` and ``pat_weights_example.png``: PAT's
  weighting curves and one image's weights
  (:mod:`~mmseg_pat.analysis.weight_plots`);
* ``gain_vs_<variant>.png``: gain over the baseline (paired by seed) of the
  tail mIoU and the mIoU against a variant: a number such as the imbalance
  ratio of the generated data or the memory grid, or a name such as the
  breed held out;
* ``learning_curves*.png``: the mIoU and tail mIoU of each method against
  the training iteration (mean and ± std band over seeds), and their gain
  over the baseline, for runs that validated every N iterations.
"""
import json
import math
import os
import os.path as osp
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from mmseg_pat.utils.class_counts import (FREQUENCY_GROUPS, frequency_groups,
                                          load_class_counts)

from .runs import (by_iteration, collect_curves, finished, mean_std,
                   methods_of, paired_gains, slug, variant_of)
from .weight_plots import plot_weight_map, plot_weighting_curves

_GROUP_COLOURS = dict(head='#dbe9f6', body='#f2f2f2', tail='#fbe3d6')


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
    methods = methods_of(rows)
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


def parse_variant(variant: str) -> Tuple[str, Union[float, str]]:
    """``'imbalance_ratio=25'`` -> ``('imbalance_ratio', 25.0)``,
    ``'held_out_breed=Bengal'`` -> ``('held_out_breed', 'Bengal')``.

    Raises:
        ValueError: If the variant is not one ``key=value``.
    """
    match = re.fullmatch(r'([^=,]+)=([^=,]+)', variant)
    if match is None:
        raise ValueError(f'variant {variant!r} is not one key=value')
    try:
        return match.group(1), float(match.group(2))
    except ValueError:
        return match.group(1), match.group(2)


def plot_gain_vs_variant(rows: Sequence[Dict],
                         out_path: str,
                         baseline: str = 'ce',
                         metrics: Sequence[str] = ('tail_mIoU',
                                                   'mIoU')) -> str:
    """Gain of each method over the baseline against a variant.

    Numbers (e.g. ``imbalance_ratio=25``, ``memory_grid=64``) on a log
    axis, names (e.g. ``held_out_breed=Bengal``) side by side. Runs with
    no variant are left out (a baseline with no variant is the baseline of
    every variant, see :func:`paired_gains`).

    Args:
        rows (Sequence[dict]): Per-run rows whose ``variant`` is one
            ``key=value``, the same key for all.
        out_path (str): The PNG to write.
        baseline (str): The method gains are measured from (paired by seed,
            :func:`paired_gains`). Default: 'ce'.
        metrics (Sequence[str]): One panel per metric.
            Default: ('tail_mIoU', 'mIoU').

    Returns:
        str: ``out_path``.
    """
    values = {
        v: parse_variant(v)[1]
        for v in dict.fromkeys(map(variant_of, rows)) if v
    }
    key = parse_variant(next(iter(values)))[0]
    numeric = all(isinstance(x, float) for x in values.values())
    # names: one position each, in order of appearance
    position = values if numeric else {v: i for i, v in enumerate(values)}
    methods = [m for m in methods_of(rows) if m != baseline]
    fig = Figure(figsize=(5 * len(metrics), 4))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        gains = paired_gains(rows, baseline, metric)
        for i, method in enumerate(methods):
            points = sorted((position[v], g) for (v, m), g in gains.items()
                            if m == method and v in position)
            if not points:
                continue
            shift = 0 if numeric else (i - (len(methods) - 1) / 2) * 0.15
            ax.errorbar([p[0] + shift for p in points],
                        [p[1][0] for p in points],
                        yerr=[p[1][1] for p in points], marker='o',
                        capsize=3, label=method,
                        linestyle='-' if numeric else 'none')
        ax.axhline(0, color='grey', lw=0.8)
        if numeric:
            ax.set_xscale('log')
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(sorted(values.values()))
            ax.xaxis.set_major_formatter(
                FuncFormatter(lambda v, _: f'{v:g}'))
        else:
            ax.set_xticks(list(position.values()))
            ax.set_xticklabels(list(values.values()))
            ax.set_xlim(-0.5, len(position) - 0.5)
        ax.set_xlabel(key.replace('_', ' '))
        ax.set_ylabel(f'{metric.replace("_", " ")} gain over {baseline} '
                      '(points)')
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(True, alpha=0.3)
    fig.suptitle(f'gain over {baseline}, paired by seed (mean ± std)',
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    return out_path


def plot_learning_curves(points: Sequence[Dict],
                         out_path: str,
                         baseline: str = 'ce',
                         metrics: Sequence[str] = ('mIoU', 'tail_mIoU'),
                         title: Optional[str] = None) -> str:
    """Each method's metrics against the training iteration, and their gain
    over the baseline.

    Top row: the metric of each method, mean over seeds and a ± std band;
    bottom row: its gain over the baseline, paired by seed
    (:func:`paired_gains` at each iteration), mean and ± std band.

    Args:
        points (Sequence[dict]): Learning-curve rows of one variant
            (:func:`~mmseg_pat.analysis.runs.collect_curves`: ``method``,
            ``seed``, ``iter`` and the metrics).
        out_path (str): The PNG to write.
        baseline (str): The method gains are measured from. Default: 'ce'.
        metrics (Sequence[str]): One column per metric.
            Default: ('mIoU', 'tail_mIoU').
        title (str, optional): Figure title. Default: None.

    Returns:
        str: ``out_path``.
    """
    iters = sorted({int(p['iter']) for p in points})
    methods = methods_of(points)
    colours = {
        m: colormaps['tab10'](i % 10)
        for i, m in enumerate(methods)
    }
    by_iter = by_iteration(points)
    fig = Figure(figsize=(5 * len(metrics), 7.5))
    axes = fig.subplots(2, len(metrics), squeeze=False, sharex=True)
    for column, metric in enumerate(metrics):
        name = metric.replace('_', ' ')
        gains = paired_gains(by_iter, baseline, metric)
        for method in methods:
            stats = np.array([
                mean_std([
                    float(p.get(metric, math.nan)) for p in points
                    if p['method'] == method and int(p['iter']) == step
                ]) for step in iters
            ])
            _line_and_band(axes[0, column], iters, stats, colours[method],
                           method)
            if method == baseline:
                continue
            steps = [s for s in iters if (str(s), method) in gains]
            _line_and_band(
                axes[1, column], steps,
                np.array([gains[(str(s), method)][:2] for s in steps]),
                colours[method], method)
        axes[0, column].set_ylabel(f'{name} (%)')
        axes[1, column].axhline(0, color='grey', lw=0.8)
        axes[1, column].set_ylabel(f'{name} gain over {baseline} (points)')
        axes[1, column].set_xlabel('training iteration')
        for ax in axes[:, column]:
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.suptitle((f'{title}: ' if title else '') +
                 'mean over seeds, band: ± std; gains paired by seed',
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    return out_path


def _line_and_band(ax, x: Sequence[float], stats: np.ndarray, colour,
                   label: str) -> None:
    """A mean line with a ± std band; ``stats`` holds (mean, std) rows."""
    if not len(x):
        return
    mean, std = stats[:, 0], stats[:, 1]
    ax.plot(x, mean, marker='.', color=colour, label=label)
    ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2,
                    linewidth=0)


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
               pat: str = 'pat',
               curves: Optional[Sequence[Dict]] = None) -> List[str]:
    """Draw every plot the runs allow; their paths.

    Per-class IoU for each variant (one plot for all when the baseline runs
    with no variant, as for memory grids), the weighting curves, the weight
    map when the baseline and PAT runs have checkpoints, the gain against
    the variant when there are several variants of one key, and the
    learning curves of each variant.

    Args:
        rows (Sequence[dict]): Per-run rows (``runs.csv``).
        out_dir (str): Folder of the PNGs.
        baseline (str): The method gains are measured from. Default: 'ce'.
        pat (str): The PAT method of the weight map. Default: 'pat'.
        curves (Sequence[dict], optional): Learning-curve rows
            (``curves.csv``). Default: None (read from the runs' work dirs
            where they still exist,
            :func:`~mmseg_pat.analysis.runs.collect_curves`).
    """
    os.makedirs(out_dir, exist_ok=True)
    variants = list(dict.fromkeys(map(variant_of, rows)))
    paths = [
        plot_per_class_iou(members, osp.join(out_dir, name), counts, title)
        for members, name, counts, title in _per_class_plots(rows, variants)
    ]
    paths.append(
        plot_weighting_curves(osp.join(out_dir, 'weighting_curves.png')))
    pair = _example_pair(rows, baseline, pat)
    if pair is not None:
        paths.append(
            plot_weight_map(*pair, osp.join(out_dir,
                                            'pat_weights_example.png'),
                            names=(baseline, pat)))
    named = [v for v in variants if v]
    try:
        key = {parse_variant(v)[0] for v in named}
    except ValueError:
        key = set()
    if len(named) > 1 and len(key) == 1:
        paths.append(
            plot_gain_vs_variant(
                rows, osp.join(out_dir, f'gain_vs_{key.pop()}.png'),
                baseline))
    curves = collect_curves(rows) if curves is None else curves
    curve_variants = list(dict.fromkeys(map(variant_of, curves)))
    for variant in curve_variants:
        name = (f'learning_curves_{slug(variant)}.png'
                if len(curve_variants) > 1 else 'learning_curves.png')
        paths.append(
            plot_learning_curves(
                [p for p in curves if variant_of(p) == variant],
                osp.join(out_dir, name), baseline, title=variant or None))
    return paths


def _per_class_plots(
        rows: Sequence[Dict], variants: Sequence[str]
) -> Iterator[Tuple[List[Dict], str, Optional[str], str]]:
    """(rows, file name, class counts, title) of each per-class IoU plot.

    One per variant; but when runs with no variant (a baseline that keeps
    no memory) stand beside variants (memory grids), they belong to every
    variant: one plot, each method named with its variant.
    """
    rows = finished(rows)
    if '' in variants and len(variants) > 1:
        rows = [
            dict(r, variant='',
                 method=' '.join(p for p in (r['method'], variant_of(r))
                                 if p)) for r in rows
        ]
        variants = ['']
    for variant in variants:
        members = [r for r in rows if variant_of(r) == variant]
        if not members:
            continue
        counts = next((str(r['class_counts']) for r in members
                       if r.get('class_counts')), None)
        name = f'per_class_iou_{slug(variant)}.png' if len(
            variants) > 1 else 'per_class_iou.png'
        title = 'per-class IoU' + (f', {variant}' if variant else '')
        yield members, name, counts, title
