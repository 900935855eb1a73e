"""Logit-adjusted cross-entropy (balanced softmax).

Menon et al., "Long-tail learning via logit adjustment", arXiv 2007.07314;
Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition",
NeurIPS 2020 (arXiv 2007.10740). A baseline of ``docs/method.md``
section 4: the cross-entropy of ``z + tau * log(prior)`` where the prior is
each class's share of the training pixels. Only the loss sees the
adjustment; at test time the model outputs its raw logits, which then
favour rare classes by ``-tau * log(prior)`` relative to the training fit.
"""
from typing import Optional

import numpy as np
import torch
from mmseg.registry import MODELS
from torch import Tensor

from mmseg_pat.utils.class_counts import (ClassCounts, ClassCountsUser,
                                          check_num_classes, log_class_prior)

from .pixel_loss import (PixelLoss, check_logits_and_labels, check_positive,
                         per_class)
from .weighted_cross_entropy_loss import weighted_cross_entropy


def logit_adjusted_loss(cls_score: Tensor,
                        label: Tensor,
                        log_prior: Tensor,
                        tau: float = 1.0,
                        weight: Optional[Tensor] = None,
                        ignore_index: int = 255,
                        reduction: str = 'mean',
                        avg_factor: Optional[float] = None) -> Tensor:
    """Cross-entropy of the logits plus ``tau * log_prior``, in float32.

    Args:
        cls_score (Tensor): Logits (N, C, d1, ..., dk), e.g. (N, C, H, W).
        label (Tensor): Labels (N, d1, ..., dk).
        log_prior (Tensor): Log of each class's training pixel share (C, ),
            see :func:`~mmseg_pat.utils.class_counts.log_class_prior`.
        tau (float): Scale of the adjustment; 0 gives cross-entropy.
            Default: 1.0.
        weight (Tensor, optional): Per-pixel weights, the labels' shape.
            Default: None (1).
        ignore_index (int): Label of ignored pixels. Default: 255.
        reduction (str): ``'mean'`` (over valid pixels), ``'sum'`` or
            ``'none'`` (the per-pixel map). Default: ``'mean'``.
        avg_factor (float, optional): Divisor of ``'mean'``. Default: None.

    Returns:
        Tensor: The loss, a float32 scalar or the per-pixel map.
    """
    check_logits_and_labels(cls_score, label)
    check_num_classes(log_prior, cls_score.shape[1])
    with torch.autocast(device_type=cls_score.device.type, enabled=False):
        logits = cls_score.float() + tau * per_class(
            log_prior.to(cls_score.device, torch.float32), cls_score.dim())
        return weighted_cross_entropy(
            logits,
            label,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            avg_factor=avg_factor)


@MODELS.register_module()
class LogitAdjustedLoss(PixelLoss, ClassCountsUser):
    """Logit-adjusted cross-entropy (balanced softmax when ``tau = 1``).

    Args:
        class_counts (Sequence[int] | str): Training pixel counts of the
            classes, the JSON written by
            ``tools/analysis/class_statistics.py``, or ``'train_set'``
            (filled in during the run by ``ClassCountsHook``). A class with
            no pixel is treated as having one.
        tau (float): Scale of the adjustment ``tau * log(prior)``.
            Default: 1.0.
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        loss_name (str): Name of the loss item; must contain ``'loss'``.
            Default: ``'loss_logit_adjusted'``.
    """

    def __init__(self,
                 class_counts: ClassCounts,
                 tau: float = 1.0,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_logit_adjusted'):
        super().__init__(loss_weight, loss_name)
        check_positive('tau', tau, allow_zero=True)
        self.tau = tau
        self.log_prior: Optional[Tensor]
        self.register_buffer('log_prior', None, persistent=False)
        self._init_class_counts(class_counts)

    def _use_class_counts(self, counts: np.ndarray) -> None:
        self.log_prior = torch.as_tensor(
            log_class_prior(counts), dtype=torch.float)

    def pixel_loss(self, cls_score: Tensor, label: Tensor,
                   **loss_args) -> Tensor:
        self._require_class_counts()
        return logit_adjusted_loss(
            cls_score,
            label,
            self._buffer_on('log_prior', cls_score.device),
            tau=self.tau,
            **loss_args)
