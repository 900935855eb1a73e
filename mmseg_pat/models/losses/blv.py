"""Balancing Logit Variation (BLV) loss.

Wang et al., "Balancing Logit Variation for Long-tailed Semantic
Segmentation", CVPR 2023 (arXiv 2306.02061). A baseline of
``docs/method.md`` section 4: in training, every logit ``z_c`` is
perturbed by ``|eps| * f_c / max(f)`` with ``eps ~ N(0, sigma^2)`` clamped
to [-1, 1] and ``f_c = log(sum n) - log(n_c)`` from the training pixel
counts ``n``, so rarer classes get larger variation; then cross-entropy. In
evaluation mode the loss is plain cross-entropy.

Unlike the authors' release this computes the counts from the dataset
(``tools/analysis/class_statistics.py``), runs on any device and names its
loss item ``'loss_blv'``. A class with no training pixel is treated as
having one, which gives it the largest variation.
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


def blv_variation_scale(class_counts: ClassCounts) -> np.ndarray:
    """Per-class scale ``f_c / max(f)`` of the variation, in [0, 1].

    Args:
        class_counts (str | Sequence[int] | np.ndarray): Training pixel
            counts or the JSON written by
            ``tools/analysis/class_statistics.py``.

    Returns:
        np.ndarray: ``f_c / max(f)`` with ``f_c = log(sum n) - log(n_c)``,
        (C, ) float64; 0 for a single class (whose f is 0).
    """
    f = -log_class_prior(class_counts)
    top = f.max()
    return f / top if top > 0 else np.zeros_like(f)


def blv_perturbation(shape: torch.Size,
                     variation_scale: Tensor,
                     sigma: float = 4.0,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    """Draw the logit variation ``|clamp(eps, -1, 1)| * scale_c``.

    ``eps`` is ``sigma`` times ``torch.randn(shape)``, drawn in float32 on
    the device of ``variation_scale``.

    Args:
        shape (torch.Size): Shape (N, C, d1, ..., dk) of the logits.
        variation_scale (Tensor): Per-class scale (C, ), see
            :func:`blv_variation_scale`.
        sigma (float): Standard deviation of ``eps``. Default: 4.0.
        generator (torch.Generator, optional): Source of randomness.
            Default: None (PyTorch's global one).

    Returns:
        Tensor: The variation, float32 of ``shape``, >= 0.
    """
    eps = torch.randn(
        shape,
        generator=generator,
        device=variation_scale.device,
        dtype=torch.float32)
    scale = per_class(variation_scale.to(torch.float32), len(shape))
    # in place: this is as large as the logits
    return eps.mul_(sigma).clamp_(-1.0, 1.0).abs_().mul_(scale)


def blv_loss(cls_score: Tensor,
             label: Tensor,
             variation_scale: Tensor,
             sigma: float = 4.0,
             training: bool = True,
             weight: Optional[Tensor] = None,
             ignore_index: int = 255,
             reduction: str = 'mean',
             avg_factor: Optional[float] = None,
             generator: Optional[torch.Generator] = None) -> Tensor:
    """BLV loss: cross-entropy of the perturbed logits, in float32.

    Args:
        cls_score (Tensor): Logits (N, C, d1, ..., dk), e.g. (N, C, H, W).
        label (Tensor): Labels (N, d1, ..., dk).
        variation_scale (Tensor): Per-class scale (C, ), see
            :func:`blv_variation_scale`.
        sigma (float): Standard deviation of the variation before clamping.
            Default: 4.0.
        training (bool): Perturb the logits; ``False`` gives plain
            cross-entropy. Default: True.
        weight (Tensor, optional): Per-pixel weights, the labels' shape.
            Default: None (1).
        ignore_index (int): Label of ignored pixels. Default: 255.
        reduction (str): ``'mean'`` (over valid pixels), ``'sum'`` or
            ``'none'`` (the per-pixel map). Default: ``'mean'``.
        avg_factor (float, optional): Divisor of ``'mean'``. Default: None.
        generator (torch.Generator, optional): Source of the variation.
            Default: None (PyTorch's global one).

    Returns:
        Tensor: The loss, a float32 scalar or the per-pixel map.
    """
    check_logits_and_labels(cls_score, label)
    check_num_classes(variation_scale, cls_score.shape[1])
    with torch.autocast(device_type=cls_score.device.type, enabled=False):
        logits = cls_score.float()
        if training:
            # the sum in the perturbation's buffer: one tensor as large as
            # the logits, not two
            logits = blv_perturbation(logits.shape,
                                      variation_scale.to(logits.device),
                                      sigma, generator).add_(logits)
        return weighted_cross_entropy(
            logits,
            label,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            avg_factor=avg_factor)


@MODELS.register_module()
class BLVLoss(PixelLoss, ClassCountsUser):
    """Balancing Logit Variation loss (CVPR 2023).

    The logits are perturbed only while the module is in training mode
    (``self.training``).

    Args:
        class_counts (Sequence[int] | str): Training pixel counts of the
            classes, the JSON written by
            ``tools/analysis/class_statistics.py``, or ``'train_set'``
            (filled in during the run by ``ClassCountsHook``).
        sigma (float): Standard deviation of the variation before clamping
            to [-1, 1], > 0. Default: 4.0.
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        loss_name (str): Name of the loss item; must contain ``'loss'``.
            Default: ``'loss_blv'``.
    """

    def __init__(self,
                 class_counts: ClassCounts,
                 sigma: float = 4.0,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_blv'):
        super().__init__(loss_weight, loss_name)
        check_positive('sigma', sigma)
        self.sigma = sigma
        self.variation_scale: Optional[Tensor]
        self.register_buffer('variation_scale', None, persistent=False)
        self._init_class_counts(class_counts)

    def _use_class_counts(self, counts: np.ndarray) -> None:
        self.variation_scale = torch.as_tensor(
            blv_variation_scale(counts), dtype=torch.float32)

    def pixel_loss(self, cls_score: Tensor, label: Tensor,
                   **loss_args) -> Tensor:
        self._require_class_counts()
        return blv_loss(
            cls_score,
            label,
            self._buffer_on('variation_scale', cls_score.device),
            sigma=self.sigma,
            training=self.training,
            **loss_args)
