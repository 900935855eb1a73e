"""PAT's weights drawn: the weighting curves, and the weights of one image
beside the predictions of the baseline and of PAT.

PNG files, drawn by matplotlib's Agg canvas without pyplot, so importing
this module changes no backend:

* ``weighting_curves.png`` (:func:`plot_weighting_curves`): PAT's
  weighting curves beta(q) (arXiv 2404.05393), ``'ina'`` for C = 3, 13, 19
  and ``'inap'``;
* ``pat_weights_example.png`` (:func:`plot_weight_map`): one validation
  image, its label, the predictions of the baseline and of PAT, and PAT's
  weights from the PAT model's own confidence of the true class
  (:func:`pat_weight_maps`, the loss's own functions).
"""
import os.path as osp
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
from torch import Tensor

from mmseg_pat.models.losses import (PATLoss, pat_log_weight_map, pat_weights,
                                     pixel_cross_entropy)
from mmseg_pat.models.losses.pixel_loss import float_logits
from mmseg_pat.stack import load_config
from mmseg_pat.utils.class_counts import frequency_groups

# Title of the weight map for each PATLoss homogenize option.
_WEIGHT_TITLES = {
    'class': r'($\beta$ divided by its class area)',
    'sqrt': r'($\beta$ divided by $\sqrt{\mathrm{class\ area}}$)',
    'none': r"($w = \beta$: homogenize='none')"
}


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

    Computed by the loss's own functions (:func:`pat_log_weight_map`)
    with the options of ``loss`` (its curve, ``max_log_weight``,
    ``homogenize`` and ``tau``) and the current confidence q of each
    pixel's true class.

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
    ce = pixel_cross_entropy(
        float_logits(logits[None], loss.tau), label[None], ignore_index)[0]
    q = torch.exp(-ce)
    log_w = pat_log_weight_map(q, label, num_classes, loss.curve,
                               loss.homogenize, loss.max_log_weight,
                               ignore_index)
    # w / sum(w) in the log domain, times the number of valid pixels
    weight = torch.softmax(log_w.reshape(-1), 0).view_as(log_w) * (
        label != ignore_index).sum()
    beta = pat_weights(q, num_classes, loss.curve, loss.max_log_weight)
    return beta, weight


def _groups_of_run(run: Dict) -> Dict[str, List[int]]:
    """The frequency groups of a run's classes (none without counts)."""
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
