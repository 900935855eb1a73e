"""Softmax focal loss for semantic segmentation.

Lin et al., "Focal Loss for Dense Object Detection", arXiv 1708.02002, in
its multi-class (softmax) form: ``-alpha_y (1 - p_y)^gamma log p_y``, where
``p_y`` is the softmax probability of the true class. A baseline of
``docs/method.md`` section 4; MMSeg's ``FocalLoss`` is the
sigmoid (one-vs-all) form only. The class weights ``alpha`` are given, or
computed from the training pixel counts by a weighting of the
class-weighted cross-entropy (``WEIGHTING_METHODS`` of
``weighted_cross_entropy_loss``).
"""
from typing import Optional, Sequence

import torch
from mmseg.registry import MODELS
from torch import Tensor

from mmseg_pat.utils.class_counts import ClassCounts

from .pixel_loss import (PixelLoss, check_logits_and_labels, check_positive,
                         class_weight_map, pixel_cross_entropy,
                         reduce_valid_pixel_loss)
from .weighted_cross_entropy_loss import ClassWeightsFromCounts


def softmax_focal_loss(cls_score: Tensor,
                       label: Tensor,
                       gamma: float = 2.0,
                       alpha: Optional[Tensor] = None,
                       weight: Optional[Tensor] = None,
                       ignore_index: int = 255,
                       reduction: str = 'mean',
                       avg_factor: Optional[float] = None) -> Tensor:
    """Softmax focal loss of a batch of logits, in float32.

    One fused ``F.cross_entropy`` pass gives ``l = -log p_y``, and
    ``p_y = exp(-l)``.

    Args:
        cls_score (Tensor): Logits (N, C, d1, ..., dk), e.g. (N, C, H, W).
        label (Tensor): Labels (N, d1, ..., dk).
        gamma (float): Focusing exponent, >= 0; 0 gives cross-entropy.
            Default: 2.0.
        alpha (Tensor, optional): Weight ``alpha_c`` of each class (C, ).
            Default: None (1).
        weight (Tensor, optional): Per-pixel weights, the labels' shape.
            Default: None (1).
        ignore_index (int): Label of ignored pixels. Default: 255.
        reduction (str): ``'mean'`` (over valid pixels, weighted by
            ``weight`` but not by ``alpha``), ``'sum'`` or ``'none'`` (the
            per-pixel map, 0 at ignored pixels). Default: ``'mean'``.
        avg_factor (float, optional): Divisor of ``'mean'`` in place of the
            number (summed weight) of valid pixels. Default: None.

    Returns:
        Tensor: The loss, a float32 scalar or the per-pixel map.
    """
    check_positive('gamma', gamma, allow_zero=True)
    check_logits_and_labels(cls_score, label)
    num_classes = cls_score.shape[1]
    if alpha is not None and len(alpha) != num_classes:
        raise ValueError(f'alpha has {len(alpha)} entries but the logits '
                         f'have {num_classes} classes')
    with torch.autocast(device_type=cls_score.device.type, enabled=False):
        ce = pixel_cross_entropy(cls_score.float(), label, ignore_index)
        # 1 - p by expm1 keeps precision near p = 1; the floor keeps the
        # gradient of (1 - p)^gamma finite for 0 < gamma < 1.
        modulator = (-torch.expm1(-ce)).clamp(
            min=torch.finfo(torch.float32).tiny).pow(gamma)
        loss = modulator * ce
        if alpha is not None:
            loss = loss * class_weight_map(label, alpha, ignore_index)
        return reduce_valid_pixel_loss(loss, label, ignore_index, weight,
                                       reduction, avg_factor)


@MODELS.register_module()
class SoftmaxFocalLoss(PixelLoss, ClassWeightsFromCounts):
    """Softmax focal loss ``-alpha_y (1 - p_y)^gamma log p_y``.

    Give at most one of ``alpha`` and ``class_counts``; with neither every
    class has weight 1.

    Args:
        gamma (float): Focusing exponent, >= 0. Default: 2.0.
        alpha (Sequence[float], optional): Weight of each class, >= 0.
            Default: None (1 for every class).
        class_counts (Sequence[int] | str, optional): Training pixel counts,
            the JSON written by ``tools/analysis/class_statistics.py``, or
            ``'train_set'`` (filled in during the run by
            ``ClassCountsHook``); ``alpha`` is then computed by
            ``weighting``, as for ``WeightedCrossEntropyLoss``.
            Default: None.
        weighting (str): How ``alpha`` follows from ``class_counts``, a key
            of ``WEIGHTING_METHODS``. Default: ``'log'``.
        beta (float, optional): Parameter of
            ``weighting='effective_number'``, in [0, 1); an error with
            another weighting. Default: None (0.999).
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        loss_name (str): Name of the loss item; must contain ``'loss'``.
            Default: ``'loss_softmax_focal'``.

    Raises:
        ValueError: If ``gamma`` is negative, ``alpha`` has a negative
            weight, both ``alpha`` and ``class_counts`` are given, or
            ``weighting`` or ``beta`` is not valid.
    """

    class_weight_buffer = 'alpha'

    def __init__(self,
                 gamma: float = 2.0,
                 alpha: Optional[Sequence[float]] = None,
                 class_counts: Optional[ClassCounts] = None,
                 weighting: str = 'log',
                 beta: Optional[float] = None,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_softmax_focal'):
        super().__init__(loss_weight, loss_name)
        check_positive('gamma', gamma, allow_zero=True)
        if alpha is not None and class_counts is not None:
            raise ValueError('give alpha or class_counts, not both')
        if alpha is not None:
            alpha = torch.as_tensor(alpha, dtype=torch.float32)
            if alpha.dim() != 1 or not torch.all(alpha >= 0):
                raise ValueError('alpha must be a list of per-class weights '
                                 f'>= 0, got {alpha.tolist()}')
        self.gamma = gamma
        self.alpha: Optional[Tensor]
        self.register_buffer('alpha', alpha, persistent=False)
        self._init_class_weighting(class_counts, weighting, beta)

    def pixel_loss(self, cls_score: Tensor, label: Tensor,
                   **loss_args) -> Tensor:
        self._check_counts_fit(cls_score.shape[1])
        return softmax_focal_loss(
            cls_score,
            label,
            gamma=self.gamma,
            alpha=self._buffer_on('alpha', cls_score.device),
            **loss_args)
