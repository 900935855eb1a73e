"""Class-weighted cross-entropy that works with ignored pixels.

A baseline of ``docs/method.md`` section 4. MMSeg 1.2.2's
``CrossEntropyLoss(class_weight=...)`` indexes ``class_weight[255]`` at
ignored pixels when no ``avg_factor`` is given and crashes; this loss never
uses an ignored label as an index.

The class weights are given directly or computed from the training pixel
counts by a method of :data:`WEIGHTING_METHODS`: ``'inverse'`` (1 / n),
``'sqrt_inverse'`` (1 / sqrt(n)), ``'log'``, the ENet weighting
1 / ln(1.02 + f) of Paszke et al., "ENet: A Deep Neural Network Architecture
for Real-Time Semantic Segmentation", arXiv 1606.02147, or
``'effective_number'``, (1 - beta) / (1 - beta^n) of Cui et al.,
"Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019
(arXiv 1901.05555). The softmax focal loss takes the same weightings
(:class:`ClassWeightsFromCounts`). The reduction is
PyTorch's ``F.cross_entropy(weight=...)``: the weighted mean
``sum_i w_{y_i} l_i / sum_i w_{y_i}`` over valid pixels, exactly 0 (not
NaN) when there is none.
"""
import logging
import numbers
import warnings
from typing import Optional, Sequence, Union

import numpy as np
import torch
from mmengine.logging import print_log
from mmseg.models.losses.utils import get_class_weight
from mmseg.registry import MODELS
from torch import Tensor

from mmseg_pat.utils.class_counts import (ClassCounts, ClassCountsUser,
                                          check_num_classes, load_class_counts)

from .pixel_loss import (PixelLoss, check_logits_and_labels, check_option,
                         class_weight_map, pixel_cross_entropy,
                         reduce_pixel_loss, valid_weight)

#: beta of ``weighting='effective_number'`` when none is given.
DEFAULT_BETA = 0.999


def effective_number_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al.'s class-balanced weights ``(1 - beta) / (1 - beta^n)``.

    The inverse of the effective number of samples
    ``E_n = (1 - beta^n) / (1 - beta)``. ``1 - beta^n`` is computed as
    ``-expm1(n log beta)``, exact for small n and 1 once ``beta^n``
    underflows, so a huge count gets weight ``1 - beta``.

    Args:
        counts (np.ndarray): Pixel counts n of the classes, >= 1.
        beta (float): In [0, 1); 0 gives 1 for every class, and towards 1
            the weights approach 1 / n.

    Returns:
        np.ndarray: Unnormalised weights (C, ), float64.
    """
    with np.errstate(divide='ignore'):  # log(0) = -inf: beta^n = 0
        log_beta = np.log(beta)
    return (1.0 - beta) / -np.expm1(counts * log_beta)


#: Class weighting methods: name -> unnormalised weight of each class as a
#: function of its training pixel count n (float64 >= 1) and ``beta``, which
#: only ``'effective_number'`` reads.
WEIGHTING_METHODS = {
    'inverse': lambda n, beta: 1.0 / n,
    'sqrt_inverse': lambda n, beta: 1.0 / np.sqrt(n),
    'log': lambda n, beta: 1.0 / np.log(1.02 + n / np.sum(n)),
    'effective_number': effective_number_weights,
}


def check_weighting(weighting: str,
                    beta: Optional[float] = None) -> Optional[float]:
    """Check a weighting method and its ``beta``; return the beta to use.

    Args:
        weighting (str): A key of :data:`WEIGHTING_METHODS`.
        beta (float, optional): Parameter of ``'effective_number'``, in
            [0, 1); only that method takes one. Default: None
            (:data:`DEFAULT_BETA` for ``'effective_number'``).

    Returns:
        float | None: ``beta`` (or :data:`DEFAULT_BETA`) for
        ``'effective_number'``, None for the other methods.

    Raises:
        ValueError: If ``weighting`` is not a method, ``beta`` is not a
            number in [0, 1), or ``beta`` is given with another method.
    """
    check_option('weighting', weighting, WEIGHTING_METHODS)
    if weighting != 'effective_number':
        if beta is not None:
            raise ValueError(
                "beta is the parameter of weighting='effective_number'; "
                f'got beta={beta!r} with weighting={weighting!r}')
        return None
    if beta is None:
        return DEFAULT_BETA
    if (not isinstance(beta, numbers.Real) or isinstance(beta, bool)
            or not 0 <= beta < 1):
        raise ValueError(f'beta must be a number in [0, 1), got {beta!r}')
    return float(beta)


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
                              weighting: str = 'log',
                              beta: Optional[float] = None) -> np.ndarray:
    """Class weights from training pixel counts.

    The weights are scaled so that their mean over classes, weighted by the
    class frequencies, is 1: the average training pixel keeps weight 1 (for
    ``'inverse'`` this is scikit-learn's ``'balanced'``, N / (C n_c)). Every
    method is scaled so, ``'effective_number'`` included, whose paper scales
    the weights to sum to C instead: one scale for all methods keeps the
    loss of the average pixel, and so the learning rate tuned for
    cross-entropy, whichever method is chosen. The ratios between classes
    are Cui et al.'s; for their scale multiply by ``C / sum(weights)``
    (the weighted mean of :func:`weighted_cross_entropy` does not change
    with the scale). A class with no training pixel is treated as having
    one, as in :func:`~mmseg_pat.utils.class_counts.log_class_prior`: its
    effective-number weight is then ``(1 - beta) / (1 - beta) = 1`` before
    scaling, never a division by zero.

    Args:
        class_counts (str | Sequence[int] | np.ndarray): Training pixel
            counts or the JSON file written by
            ``tools/analysis/class_statistics.py``.
        weighting (str): A key of :data:`WEIGHTING_METHODS`.
            Default: ``'log'``.
        beta (float, optional): Parameter of ``'effective_number'``, in
            [0, 1). Default: None (:data:`DEFAULT_BETA` there; an error
            with another method).

    Returns:
        np.ndarray: Weights (C, ), float64.

    Raises:
        ValueError: As :func:`check_weighting`, or if the counts are not
            pixel counts.
    """
    beta = check_weighting(weighting, beta)
    pixels = np.maximum(load_class_counts(class_counts), 1).astype(np.float64)
    weights = WEIGHTING_METHODS[weighting](pixels, beta)
    return weights / np.sum(pixels / np.sum(pixels) * weights)


def warn_if_effective_number_saturates(counts: np.ndarray,
                                       weights: np.ndarray,
                                       beta: float) -> bool:
    """Say so when effective-number weights are all within 1% of each
    other: then ``beta^n`` is about 0 for every class (pixel counts are
    large: Cui et al.'s betas were made for counts of images), and the loss
    is plain cross-entropy. Returns whether it warned."""
    present = np.asarray(weights)[np.asarray(counts) > 0]
    if present.size < 2 or present.max() > 1.01 * present.min():
        return False
    smallest = int(np.min(np.asarray(counts)[np.asarray(counts) > 0]))
    message = (
        f"weighting='effective_number' with beta={beta} gives every class "
        f'the same weight for these pixel counts (the smallest is '
        f'{smallest}; beta^n is about 0 for all of them), so the loss is '
        'plain cross-entropy. A beta that separates the classes is close to '
        f'1 - 1/n: e.g. beta={1 - 1 / smallest:.8f} for the rarest class.')
    warnings.warn(message)
    print_log(message, logger='current', level=logging.WARNING)
    return True


class ClassWeightsFromCounts(ClassCountsUser):
    """The part of a loss whose class weights may come from training pixel
    counts: it checks ``weighting`` and ``beta``, takes the counts (maybe
    later, ``'train_set'``) and keeps the weights in the loss's buffer
    :attr:`class_weight_buffer`, registered before
    :meth:`_init_class_weighting` is called."""

    #: Name of the (C, ) buffer that receives the weights.
    class_weight_buffer = 'class_weight'

    def _init_class_weighting(self, class_counts: Optional[ClassCounts],
                              weighting: str,
                              beta: Optional[float]) -> None:
        self.beta = check_weighting(weighting, beta)
        self.weighting = weighting
        self.uses_counts = class_counts is not None
        if self.uses_counts:
            self._init_class_counts(class_counts)

    def _use_class_counts(self, counts: np.ndarray) -> None:
        weights = class_weights_from_counts(counts, self.weighting, self.beta)
        if self.weighting == 'effective_number':
            warn_if_effective_number_saturates(counts, weights, self.beta)
        setattr(self, self.class_weight_buffer,
                torch.as_tensor(weights, dtype=torch.float32))

    @property
    def class_counts_pending(self) -> bool:
        return self.uses_counts and self.class_counts is None

    def _check_counts_fit(self, num_classes: int) -> None:
        """With counts: raise unless they have arrived and there is one per
        class of the logits."""
        if self.uses_counts:
            check_num_classes(self._require_class_counts(), num_classes)


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
class WeightedCrossEntropyLoss(PixelLoss, ClassWeightsFromCounts):
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
        beta (float, optional): Parameter of
            ``weighting='effective_number'``, in [0, 1); an error with
            another weighting. Default: None (0.999, :data:`DEFAULT_BETA`).
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        loss_name (str): Name of the loss item; must contain ``'loss'``.
            Default: ``'loss_wce'``.

    Raises:
        ValueError: If both ``class_weight`` and ``class_counts`` are
            given, a weight is negative, or ``weighting`` or ``beta`` is
            not valid (:func:`check_weighting`).
    """

    def __init__(self,
                 class_weight: Optional[Union[Sequence[float], str]] = None,
                 class_counts: Optional[ClassCounts] = None,
                 weighting: str = 'log',
                 beta: Optional[float] = None,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_wce'):
        super().__init__(loss_weight, loss_name)
        if class_weight is not None and class_counts is not None:
            raise ValueError('give class_weight or class_counts, not both')
        if class_weight is not None:
            class_weight = torch.as_tensor(
                _check_class_weight(get_class_weight(class_weight)),
                dtype=torch.float32)
        self.class_weight: Optional[Tensor]
        self.register_buffer('class_weight', class_weight, persistent=False)
        self._init_class_weighting(class_counts, weighting, beta)

    def pixel_loss(self, cls_score: Tensor, label: Tensor,
                   **loss_args) -> Tensor:
        self._check_counts_fit(cls_score.shape[1])
        return weighted_cross_entropy(
            cls_score,
            label,
            class_weight=self._buffer_on('class_weight', cls_score.device),
            **loss_args)
