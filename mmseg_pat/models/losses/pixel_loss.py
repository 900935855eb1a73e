"""Pieces shared by the project's per-pixel softmax losses.

PATLoss and the baselines of ``docs/method.md`` section 4 (BLV,
class-weighted cross-entropy, softmax focal loss, logit adjustment) follow
one contract, MMSeg's: logits (N, C, H, W) and integer labels (N, H, W);
per-pixel weights (such as ``OHEMPixelSampler``'s map) multiply each pixel's
loss; ignored pixels contribute exactly 0 and are never used as an index;
an empty batch or crop gives 0; ``reduction='none'`` returns the per-pixel
map. This module holds that contract, and its checks, once.
"""
import logging
import math
import numbers
import warnings
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor

#: Reductions a loss accepts as ``reduction_override``.
REDUCTIONS = ('mean', 'sum', 'none')


def check_option(name: str, value, allowed) -> None:
    """Raise a ValueError unless ``value`` is one of ``allowed``."""
    try:
        ok = value in allowed
    except TypeError:  # unhashable, e.g. a list
        ok = False
    if not ok or not isinstance(value, str):
        raise ValueError(f'{name} must be one of {tuple(allowed)}, '
                         f'got {value!r}')


def check_positive(name: str, value, allow_zero: bool = False) -> None:
    """Raise a ValueError unless ``value`` is a finite real number > 0
    (>= 0 with ``allow_zero``)."""
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value) or value < 0
            or (value == 0 and not allow_zero)):
        bound = '>= 0' if allow_zero else '> 0'
        raise ValueError(
            f'{name} must be a finite number {bound}, got {value!r}')


def check_labels(label: Tensor, num_classes: int,
                 ignore_index: int) -> Tuple[Tensor, Tensor]:
    """Validate labels and index them for the loss.

    Args:
        label (Tensor): Labels of shape (N, H, W).
        num_classes (int): Number of classes C of the logits.
        ignore_index (int): Label value that marks ignored pixels.

    Returns:
        tuple[Tensor, Tensor]: ``class_index`` (int64, the label, and C at
        ignored pixels) and ``gather_index`` (the label, 0 at ignored
        pixels), both (N, H, W). Neither ever holds ``ignore_index``.

    Raises:
        ValueError: If the labels are not integers, or a label is neither
            in [0, C) nor ``ignore_index``.
    """
    if label.dtype == torch.bool or label.is_floating_point() or (
            label.is_complex()):
        raise ValueError(
            f'labels must be integer class indices, got a {label.dtype} '
            'tensor (1.7 would be read as class 1). Load the label maps with '
            "MMSeg's LoadAnnotations, or convert them with .long().")
    valid = label != ignore_index
    gather_index = torch.where(valid, label, 0).long()
    if gather_index.numel() == 0:
        return gather_index, gather_index
    lo, hi = torch.aminmax(gather_index)
    if lo.item() < 0 or hi.item() >= num_classes:
        bad = valid & ((label < 0) | (label >= num_classes))
        values = torch.unique(label[bad]).tolist()
        raise ValueError(
            f'label values {values[:10]} are outside [0, {num_classes}) and '
            f'are not ignore_index={ignore_index}. Check that num_classes of '
            'the decode head matches the dataset, that reduce_zero_label is '
            'set as the dataset needs, and that void pixels are mapped to '
            'the ignore index.')
    class_index = torch.where(valid, gather_index, num_classes)
    return class_index, gather_index


def check_logits_and_labels(cls_score: Tensor, label: Tensor) -> None:
    """Raise a ValueError unless logits are (N, C, H, W), labels (N, H, W).

    Args:
        cls_score (Tensor): Logits.
        label (Tensor): Labels.
    """
    if cls_score.dim() != 4 or label.shape != (cls_score.shape[0],
                                               *cls_score.shape[2:]):
        raise ValueError(
            f'expected logits (N, C, H, W) and labels (N, H, W) of the same '
            f'N, H, W; got {tuple(cls_score.shape)} and {tuple(label.shape)}')


def true_class_log_prob(logits: Tensor, label: Tensor,
                        ignore_index: int) -> Tuple[Tensor, Tensor]:
    """Log-softmax probability of each pixel's true class, in float32.

    Args:
        logits (Tensor): Logits (N, C, H, W).
        label (Tensor): Labels (N, H, W).
        ignore_index (int): Label of ignored pixels.

    Returns:
        tuple[Tensor, Tensor]: ``log_p`` (N, H, W), that of class 0 at
        ignored pixels (finite, to be weighted by 0), and ``class_index``
        (N, H, W), the label with C at ignored pixels.

    Raises:
        ValueError: If the shapes do not match or a label is neither in
            [0, C) nor ``ignore_index``.
    """
    check_logits_and_labels(logits, label)
    class_index, gather_index = check_labels(label, logits.shape[1],
                                             ignore_index)
    log_p = F.log_softmax(logits.float(), dim=1).gather(
        1, gather_index.unsqueeze(1)).squeeze(1)
    return log_p, class_index


def pixel_weights(class_index: Tensor,
                  num_classes: int,
                  weight: Optional[Tensor] = None,
                  class_weight: Optional[Tensor] = None) -> Tensor:
    """Weight of each pixel: ``class_weight[y] * weight``, 0 where ignored.

    Args:
        class_index (Tensor): Labels (N, H, W) with C at ignored pixels, as
            returned by :func:`true_class_log_prob`.
        num_classes (int): Number of classes C.
        weight (Tensor, optional): Per-pixel weights (N, H, W).
            Default: None (1).
        class_weight (Tensor, optional): Per-class weights (C, ).
            Default: None (1).

    Returns:
        Tensor: Float32 weights (N, H, W), exactly 0 at ignored pixels.
    """
    if class_weight is None:
        table = torch.ones(num_classes, device=class_index.device)
    else:
        table = class_weight.to(class_index.device, torch.float32)
    # The extra last entry is the "class" of ignored pixels.
    w = torch.cat([table, table.new_zeros(1)])[class_index]
    if weight is not None:
        w = w * weight.float()
    return w


def reduce_pixel_loss(pixel_loss: Tensor,
                      norm_weight: Tensor,
                      reduction: str = 'mean',
                      avg_factor: Optional[Union[float, Tensor]] = None
                      ) -> Tensor:
    """Reduce a per-pixel loss map.

    Args:
        pixel_loss (Tensor): Weighted per-pixel loss (N, H, W), 0 at ignored
            pixels.
        norm_weight (Tensor): Weight of each pixel in the mean (N, H, W), 0
            at ignored pixels.
        reduction (str): ``'mean'``: ``sum(pixel_loss) / sum(norm_weight)``
            (exactly 0 when no pixel has weight); ``'sum'``; or ``'none'``:
            the map itself. Default: ``'mean'``.
        avg_factor (float | Tensor, optional): Replaces
            ``sum(norm_weight)`` as the divisor of ``'mean'``.
            Default: None.

    Returns:
        Tensor: The loss, a scalar or (N, H, W).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(
            f'reduction must be one of {REDUCTIONS}, got {reduction!r}')
    if reduction == 'none':
        return pixel_loss
    total = pixel_loss.sum()
    if reduction == 'sum':
        return total
    denom = norm_weight.sum() if avg_factor is None else torch.as_tensor(
        avg_factor, dtype=total.dtype, device=total.device)
    return total / denom.clamp(min=torch.finfo(torch.float32).tiny)


class PixelLoss(nn.Module):
    """Base of the baseline losses: MMSeg's loss contract in one place.

    It holds ``loss_weight`` and ``loss_name`` and implements MMSeg's
    ``forward``; a subclass implements :meth:`pixel_loss`.

    Args:
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        loss_name (str): Name of the loss item; must contain ``'loss'`` to
            be back-propagated by MMSeg. Default: ``'loss_pixel'``.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_pixel'):
        super().__init__()
        if not isinstance(loss_name, str) or 'loss' not in loss_name:
            raise ValueError(
                f"loss_name must contain 'loss' (MMSeg back-propagates only "
                f'such keys), got {loss_name!r}')
        self.loss_weight = loss_weight
        self._loss_name = loss_name
        self._last_training_loss: Optional[Tensor] = None
        self._said_non_finite = False

    @property
    def loss_name(self) -> str:
        """Name of the loss item in the loss dict."""
        return self._loss_name

    def pixel_loss(self, cls_score: Tensor, label: Tensor,
                   **reduction) -> Tensor:
        """The loss before ``loss_weight``; ``reduction`` holds ``weight``,
        ``ignore_index``, ``reduction`` and ``avg_factor``."""
        raise NotImplementedError

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                ignore_index: int = 255,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Compute the loss.

        Args:
            cls_score (Tensor): Logits (N, C, H, W).
            label (Tensor): Labels (N, H, W).
            weight (Tensor, optional): Per-pixel weights (N, H, W).
                Default: None.
            ignore_index (int): Label of ignored pixels. Default: 255.
            avg_factor (float, optional): Divisor of the mean.
                Default: None (the summed weight of valid pixels).
            reduction_override (str, optional): ``'none'`` returns the
                per-pixel map (N, H, W), ``'sum'`` the sum; ``'mean'`` or
                None the mean. Default: None.

        Returns:
            Tensor: The loss, multiplied by ``loss_weight``.
        """
        reduction = reduction_override or 'mean'
        check_option('reduction', reduction, REDUCTIONS)
        self._say_if_last_loss_was_not_finite()
        loss = self.loss_weight * self.pixel_loss(
            cls_score,
            label,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            avg_factor=avg_factor)
        if self.training and reduction != 'none':
            self._last_training_loss = loss.detach()
        return loss

    def _say_if_last_loss_was_not_finite(self) -> None:
        """Say once when a training loss was NaN or inf, the first sign of
        a diverging run.

        The previous iteration's loss is read, not this one's: by now the
        device has computed it (MMEngine's logging waited for it), so
        reading it costs no wait.
        """
        last, self._last_training_loss = self._last_training_loss, None
        if (last is None or self._said_non_finite
                or bool(torch.isfinite(last))):
            return
        self._said_non_finite = True
        message = (
            f'{type(self).__name__} ({self.loss_name}) was {last.item()} in '
            'the last training iteration: the logits hold NaN or inf, so '
            'the run is diverging (or an input is broken). Lower the '
            'learning rate, clip gradients (optim_wrapper.clip_grad), or '
            'check the images and labels of that batch.')
        warnings.warn(message)
        print_log(message, logger='current', level=logging.WARNING)
