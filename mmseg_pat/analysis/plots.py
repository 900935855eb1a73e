"""The plots of the loss study, from its per-run rows or from any runs.

PNG files, drawn by matplotlib's Agg canvas without pyplot, so importing
this module changes no backend:

* ``per_class_iou*.png``: per-class IoU of each method (mean ± std over
  seeds), classes from head to tail by training pixel frequency;
* ``weighting_curves.png``: PAT's weighting curves beta(q) (arXiv
  2404.05393), ``'ina'`` for C = 3, 13, 19 and ``'inap'``;
* ``pat_weights_example.png``: one validation image, its label, the
  predictions of the baseline and of PAT, and PAT's weights from the PAT
  model's own confidence of the true class;
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
import torch
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullLocator
from mmengine.config import Config
from torch import Tensor

from mmseg_pat.models.losses import (PATLoss, pat_loss_from_log_prob,
                                     pat_weights)
from mmseg_pat.models.losses.pixel_loss import true_class_log_prob
from mmseg_pat.stack import load_config
from mmseg_pat.utils.class_prior import (FREQUENCY_GROUPS, frequency_groups,
                                         load_class_counts)

from .runs import (by_iteration, collect_curves, finished, mean_std,
                   methods_of, paired_gains, slug, variant_of)

_GROUP_COLOURS = dict(head='#dbe9f6', body='#f2f2f2', tail='#fbe3d6')
# Title of the weight map for each PATLoss homogenize option.
_WEIGHT_TITLES = {
    'class': r'($\beta$ divided by its class area)',
    'sqrt': r'($\beta$ divided by $\sqrt{\mathrm{class\ area}}$)',
    'none': r"($w = \beta$: homogenize='none')"
}


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


def pat_weight_maps(logits: Tensor,
                    label: Tensor,
                    loss: PATLoss,
                    ignore_index: int = 255) -> Tuple[Tensor, Tensor]:
    """PAT's weights of one image, from the model's own confidence.

    Computed by the loss's functions with the options of ``loss`` (its
    curve, ``max_log_weight``, ``homogenize`` and ``tau``) and the current
    confidence q of each pixel's true class.

    Args:
        logits (Tensor): The model's logits of the image (C, H, W).
        label (Tensor): Its labels (H, W).
        loss (PATLoss): The loss whose weights are shown.
        ignore_index (int): Label of ignored pixels. Default: 255.

    Returns:
        tuple[Tensor, Tensor]: Both (H, W): ``beta = 1/2 exp(kappa (1 -
        q))`` and the weight ``w`` of each pixel (beta after the
        homogenization) over the mean ``w`` of the valid pixels; ``w`` is
        0 at ignored pixels.
    """
    num_classes = logits.shape[0]
    log_p, class_index = true_class_log_prob(logits[None].float() / loss.tau,
                                             label[None], ignore_index)
    log_p.requires_grad_()
    total = pat_loss_from_log_prob(
        log_p, class_index, num_classes, curve=loss.curve,
        confidence='current', homogenize=loss.homogenize,
        max_log_weight=loss.max_log_weight)
    # With the weights detached and normalize='weight' the loss is
    # -sum(w log p) / sum(w): its gradient is -w / sum(w).
    grad, = torch.autograd.grad(total, log_p)
    num_valid = (class_index < num_classes).sum()
    beta = pat_weights(log_p.detach().exp(), num_classes, loss.curve,
                       loss.max_log_weight)
    return beta[0], -grad[0] * num_valid


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


def _pat_loss_of(cfg: Config, work_dir: str) -> PATLoss:
    """The PATLoss of a config's decode head, its defaults filled in."""
    losses = cfg.model.decode_head.loss_decode
    losses = losses if isinstance(losses, (list, tuple)) else [losses]
    loss_cfg = next((dict(c) for c in losses if c['type'] == 'PATLoss'),
                    None)
    if loss_cfg is None:
        raise ValueError(f'{work_dir}: the decode head has no PATLoss; pass '
                         'the PAT run second')
    loss_cfg.pop('type')
    return PATLoss(**loss_cfg)


def plot_weight_map(baseline_run: Dict,
                    pat_run: Dict,
                    out_path: str,
                    names: Tuple[str, str] = ('ce', 'pat'),
                    image_index: Optional[int] = None,
                    device: str = 'cpu',
                    max_candidates: int = 200) -> str:
    """One validation image: label, both predictions and PAT's weights.

    The weights are those PAT would give this image now
    (:func:`pat_weight_maps`): beta from the PAT model's own confidence q
    of the true class, divided as its ``homogenize`` says, over the mean
    weight of the valid pixels.

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
    cfg = load_config(pat_run['config'])
    loss = _pat_loss_of(cfg, pat_run['work_dir'])
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
            model = init_model(load_config(run['config']),
                               run['checkpoint'], device=device)
        predictions[name] = inference_model(model, sample.img_path)

    logits = predictions[names[1]].seg_logits.data.float().cpu()
    num_classes = logits.shape[0]
    ignore_index = cfg.val_evaluator.get('ignore_index', 255) if isinstance(
        cfg.val_evaluator, dict) else 255
    valid = label != ignore_index
    beta, weight = pat_weight_maps(logits, label, loss, ignore_index)

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
        (axes[1, 2], weight, r'PAT weight $w_i$ / mean $w$' + '\n' +
         _WEIGHT_TITLES[loss.homogenize]),
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
