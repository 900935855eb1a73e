"""Class-weighted cross-entropy that works with ignored pixels.

A baseline of ``docs/method.md`` section 4. MMSeg 1.2.2's
``CrossEntropyLoss(class_weight=...)`` indexes ``class_weight[255]`` at
ignored pixels when no ``avg_factor`` is given and crashes; this loss never
uses an ignored label as an index.

The class weights are given directly or computed from the training pixel
counts by a method of :data:`WEIGHTING_METHODS`: ``'inverse'`` (1 / n),
``'sqrt_inverse'`` (1 / sqrt(n)) or ``'log'``, the ENet weighting
1 / ln(1.02 + f) of Paszke et al., "ENet: A Deep Neural Network Architecture
for Real-Time Semantic Segmentation", arXiv 1606.02147. The reduction is
PyTorch's ``F.cross_entropy(weight=...)``: the weighted mean
``sum_i w_{y_i} l_i / sum_i w_{y_i}`` over valid pixels, exactly 0 (not
NaN) when there is none.
"""
from typing import Optional, Sequence, Union

import numpy as np
import torch
from mmseg.models.losses.utils import get_class_weight
from mmseg.registry import MODELS
from torch import Tensor

from mmseg_pat.utils.class_counts import (ClassCounts, ClassCountsUser,
                                          check_num_classes, log_class_prior)

from .pixel_loss import (PixelLoss, check_logits_and_labels, class_weight_map,
                         pixel_cross_entropy, reduce_pixel_loss, valid_weight)

#: Class weighting methods: name -> weight as a function of the class
#: frequency f (training pixels of the class over all training pixels).
WEIGHTING_METHODS = {
    'inverse': lambda f: 1.0 / f,
    'sqrt_inverse': lambda f: 1.0 / np.sqrt(f),
    'log': lambda f: 1.0 / np.log(1.02 + f),
}


def _check_weighting(weighting: str) -> None:
    if weighting not in WEIGHTING_METHODS:
        raise ValueError(f'weighting must be one of '
                         f'{tuple(WEIGHTING_METHODS)}, got {weighting!r}')


def _check_class_weight(class_weight) -> np.ndarray:
    values = np.asarray(class_weight, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError('class_weight must be a non-empty list with one '
                         f'weight per class, got shape {values.shape}')
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        raise ValueError('class_weight must be finite and >= 0, got '
                         f'{values[bad[0]]} at index {bad[0]}')
    return values


def class_weights_from_counts(class_counts: ClassCounts,
                              weighting: str = 'log') -> np.ndarray:
    """Class weights from training pixel counts.

    The weights are scaled so that their mean over classes, weighted by the
    class frequencies, is 1: the average training pixel keeps weight 1 (for
    ``'inverse'`` this is scikit-learn's ``'balanced'``, N / (C n_c)). A
    class with no training pixel is treated as having one.

    Args:
        class_counts (str | Sequence[int] | np.ndarray): Training pixel
            counts or the JSON file written by
            ``tools/analysis/class_statistics.py``.
        weighting (str): A key of :data:`WEIGHTING_METHODS`.
            Default: ``'log'``.

    Returns:
        np.ndarray: Weights (C, ), float64.
    """
    _check_weighting(weighting)
    frequency = np.exp(log_class_prior(class_counts))
    weights = WEIGHTING_METHODS[weighting](frequency)
    return weights / np.sum(frequency * weights)


def weighted_cross_entropy(cls_score: Tensor,
                           label: Tensor,
                           class_weight: Optional[Tensor] = None,
                           weight: Optional[Tensor] = None,
                           ignore_index: int = 255,
                           reduction: str = 'mean',
                           avg_factor: Optional[float] = None) -> Tensor:
    """Cross-entropy with per-class and per-pixel weights, in float32.

    Args:
        cls_score (Tensor): Logits (N, C, d1, ..., dk), e.g. (N, C, H, W).
        label (Tensor): Labels (N, d1, ..., dk).
        class_weight (Tensor, optional): Weight of each class (C, ).
            Default: None (1).
        weight (Tensor, optional): Per-pixel weights, the labels' shape.
            Default: None (1).
        ignore_index (int): Label of ignored pixels. Default: 255.
        reduction (str): ``'mean'`` (``sum w_i l_i / sum w_i`` with
            ``w_i = class_weight[y_i] * weight_i``), ``'sum'`` or ``'none'``
            (the map ``w_i l_i``, 0 at ignored pixels). Default: ``'mean'``.
        avg_factor (float, optional): Divisor of ``'mean'`` in place of
            ``sum w_i``. Default: None.

    Returns:
        Tensor: The loss, a float32 scalar or the per-pixel map.
    """
    check_logits_and_labels(cls_score, label)
    num_classes = cls_score.shape[1]
    if class_weight is not None and len(class_weight) != num_classes:
        raise ValueError(f'class_weight has {len(class_weight)} entries but '
                         f'the logits have {num_classes} classes')
    with torch.autocast(device_type=cls_score.device.type, enabled=False):
        if class_weight is not None:
            class_weight = class_weight.to(cls_score.device, torch.float32)
        loss = pixel_cross_entropy(cls_score.float(), label, ignore_index,
                                   class_weight)
        if weight is not None:
            weight = weight.float()
            loss = loss * weight

        def norm_weight():
            if class_weight is None:
                return valid_weight(label, ignore_index, weight)
            w = class_weight_map(label, class_weight, ignore_index)
            return w if weight is None else w * weight

        return reduce_pixel_loss(loss, norm_weight, reduction, avg_factor)


@MODELS.register_module()
class WeightedCrossEntropyLoss(PixelLoss, ClassCountsUser):
    """Class-weighted cross-entropy, safe with ignored pixels.

    Give at most one of ``class_weight`` and ``class_counts``; with neither
    this is plain cross-entropy averaged over valid pixels.

    Args:
        class_weight (Sequence[float] | str, optional): Weight of each class,
            used as given, or a file holding them (``.json``, ``.pkl``,
            ``.yaml`` or ``.npy``). Default: None.
        class_counts (Sequence[int] | str, optional): Training pixel counts,
            the JSON written by ``tools/analysis/class_statistics.py``, or
            ``'train_set'`` (filled in during the run by
            ``ClassCountsHook``); the weights are then computed by
            ``weighting``. Default: None.
        weighting (str): How weights follow from ``class_counts``, a key of
            :data:`WEIGHTING_METHODS`. Default: ``'log'``.
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        loss_name (str): Name of the loss item; must contain ``'loss'``.
            Default: ``'loss_wce'``.
    """

    def __init__(self,
                 class_weight: Optional[Union[Sequence[float], str]] = None,
                 class_counts: Optional[ClassCounts] = None,
                 weighting: str = 'log',
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_wce'):
        super().__init__(loss_weight, loss_name)
        _check_weighting(weighting)
        if class_weight is not None and class_counts is not None:
            raise ValueError('give class_weight or class_counts, not both')
        if class_weight is not None:
            class_weight = torch.as_tensor(
                _check_class_weight(get_class_weight(class_weight)),
                dtype=torch.float32)
        self.weighting = weighting
        self.uses_counts = class_counts is not None
        self.class_weight: Optional[Tensor]
        self.register_buffer('class_weight', class_weight, persistent=False)
        if self.uses_counts:
            self._init_class_counts(class_counts)

    def _use_class_counts(self, counts: np.ndarray) -> None:
        self.class_weight = torch.as_tensor(
            class_weights_from_counts(counts, self.weighting),
            dtype=torch.float32)

    @property
    def class_counts_pending(self) -> bool:
        return self.uses_counts and self.class_counts is None

    def pixel_loss(self, cls_score: Tensor, label: Tensor,
                   **reduction) -> Tensor:
        if self.uses_counts:
            check_num_classes(self._require_class_counts(),
                              cls_score.shape[1])
        return weighted_cross_entropy(
            cls_score,
            label,
            class_weight=self._buffer_on('class_weight', cls_score.device),
            **reduction)
