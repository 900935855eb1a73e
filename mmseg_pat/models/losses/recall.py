"""Recall loss: cross-entropy weighted by each class's false-negative rate.

Tian et al., "Striking the Right Balance: Recall Loss for Semantic
Segmentation", ICRA 2022 (arXiv 2106.14917), defines the recall loss as

    L = - sum_c sum_{n: y_n = c} (1 - R_{c,t}) log p_{n,c}
    R_{c,t} = TP_{c,t} / (TP_{c,t} + FN_{c,t})

where TP and FN count the pixels of class c that the prediction
``argmax_k z_k`` gets right and wrong at optimisation step t, so the weight
``1 - R = FN / (TP + FN)`` is the class's false-negative rate: a class the
model misses is learnt harder, one it finds is left alone. With recall 0
for all classes this is cross-entropy; the paper shows it moves between
cross-entropy and inverse-frequency weighting as recall changes. The
recall is not differentiated (the argmax has no gradient).

The paper weights by the recall of the current batch ("instantaneous
recall performance", its abstract), and the authors' code
(https://github.com/PotatoTian/recall-semseg) keeps no state between
batches: that is this loss with ``momentum=0``, its default.
``momentum`` m > 0 is an option of this package, not of the paper: an
exponential moving average over batches, for batches too small to estimate
a rare class's recall.

Unlike the authors' code, a class with no false negative in the batch gets
weight 0 as the formula says (their counter of false negatives starts at
1, which gives it 1 / n_c), ignored pixels count nowhere, and the mean
divides by the number of valid pixels, not of all pixels.
"""
import numbers
from typing import Optional, Tuple

import torch
from mmseg.registry import MODELS
from torch import Tensor

from .pixel_loss import (PixelLoss, check_labels, check_logits_and_labels,
                         pixel_cross_entropy, reduce_valid_pixel_loss)


def class_recall_counts(cls_score: Tensor,
                        label: Tensor,
                        ignore_index: int = 255) -> Tuple[Tensor, Tensor]:
    """True positives ``TP_c`` and labelled pixels ``TP_c + FN_c`` of each
    class; counted on the device, one ``scatter_add_`` for both, nothing
    read back.

    A pixel is a true positive when the logit of its labelled class is the
    largest, that is when the argmax prediction is its label; a tie with
    another class counts as found. (Comparing with the maximum is ``argmax``
    without its index search, which on the CPU costs several times more.)

    Args:
        cls_score (Tensor): Logits (N, C, d1, ..., dk).
        label (Tensor): Labels (N, d1, ..., dk).
        ignore_index (int): Label of ignored pixels, counted nowhere.
            Default: 255.

    Returns:
        tuple[Tensor, Tensor]: ``TP_c`` and ``TP_c + FN_c``, int64 (C, ).

    Raises:
        ValueError: On the CPU, if a label is neither in [0, C) nor
            ``ignore_index`` (on CUDA that is a device-side assert).
    """
    num_classes = cls_score.shape[1]
    with torch.no_grad():
        label = label.long()
        ignored = label == ignore_index
        try:
            true_logit = cls_score.gather(
                1, label.masked_fill(ignored, 0).unsqueeze(1)).squeeze(1)
        except (IndexError, RuntimeError):
            if label.device.type == 'cpu':
                check_labels(label, num_classes, ignore_index)
            raise
        hit = true_logit >= cls_score.amax(1)
        # bin 2c counts the misses of class c, 2c + 1 its hits; 2C the
        # ignored pixels
        bins = torch.add(hit, label, alpha=2).masked_fill_(
            ignored, 2 * num_classes)
        counts = label.new_zeros(2 * num_classes + 1)
        counts.scatter_add_(0, bins.flatten(),
                            label.new_ones(()).expand(bins.numel()))
        counts = counts[:-1].view(num_classes, 2)
        return counts[:, 1], counts.sum(1)


def updated_recall(recall: Tensor,
                   seen: Tensor,
                   true_positives: Tensor,
                   positives: Tensor,
                   momentum: float = 0.0) -> Tuple[Tensor, Tensor]:
    """The running recall after one batch.

    For a class c with pixels in the batch (``positives_c > 0``), with the
    batch's recall ``r_c = TP_c / (TP_c + FN_c)``::

        R_c <- r_c                                      the first time
        R_c <- momentum * R_c + (1 - momentum) * r_c    afterwards

    A class absent from the batch keeps its value (and stays unseen if it
    was). ``momentum=0`` is the paper's recall of the current batch.

    Args:
        recall (Tensor): Running recall (C, ), float32.
        seen (Tensor): Whether each class has a value yet (C, ), bool.
        true_positives (Tensor): ``TP_c`` of the batch (C, ).
        positives (Tensor): ``TP_c + FN_c`` of the batch (C, ).
        momentum (float): Weight of the previous value, in [0, 1).
            Default: 0.0.

    Returns:
        tuple[Tensor, Tensor]: The new ``recall`` and ``seen``; the inputs
        are not changed.
    """
    present = positives > 0
    batch = true_positives.float() / positives.clamp(min=1).float()
    blended = torch.where(seen, momentum * recall + (1 - momentum) * batch,
                          batch)
    return torch.where(present, blended, recall), seen | present


def recall_loss(cls_score: Tensor,
                label: Tensor,
                recall: Tensor,
                weight: Optional[Tensor] = None,
                ignore_index: int = 255,
                reduction: str = 'mean',
                avg_factor: Optional[float] = None) -> Tensor:
    """Cross-entropy weighted by ``1 - recall`` of each pixel's class, in
    float32.

    Args:
        cls_score (Tensor): Logits (N, C, d1, ..., dk), e.g. (N, C, H, W).
        label (Tensor): Labels (N, d1, ..., dk).
        recall (Tensor): Recall ``R_c`` of each class (C, ), in [0, 1].
        weight (Tensor, optional): Per-pixel weights, the labels' shape.
            Default: None (1).
        ignore_index (int): Label of ignored pixels. Default: 255.
        reduction (str): ``'mean'`` (``sum_i (1 - R_{y_i}) w_i l_i /
            sum_i w_i`` over valid pixels: the recall weights do not enter
            the divisor, as the paper's sum over pixels has none),
            ``'sum'`` or ``'none'`` (the per-pixel map, 0 at ignored
            pixels). Default: ``'mean'``.
        avg_factor (float, optional): Divisor of ``'mean'`` in place of
            ``sum_i w_i``. Default: None.

    Returns:
        Tensor: The loss, a float32 scalar or the per-pixel map.
    """
    check_logits_and_labels(cls_score, label)
    num_classes = cls_score.shape[1]
    if len(recall) != num_classes:
        raise ValueError(f'recall has {len(recall)} entries but the logits '
                         f'have {num_classes} classes')
    with torch.autocast(device_type=cls_score.device.type, enabled=False):
        class_weight = 1 - recall.detach().to(cls_score.device, torch.float32)
        loss = pixel_cross_entropy(cls_score.float(), label, ignore_index,
                                   class_weight)
        return reduce_valid_pixel_loss(loss, label, ignore_index, weight,
                                       reduction, avg_factor)


@MODELS.register_module()
class RecallLoss(PixelLoss):
    """Recall loss (Tian et al., ICRA 2022): cross-entropy weighted by each
    class's false-negative rate ``1 - R_c``.

    Each call counts ``TP_c`` and ``TP_c + FN_c`` of its batch (argmax
    predictions; ignored pixels and the per-pixel ``weight`` play no part),
    updates the running recall ``R`` by :func:`updated_recall` and weights
    the cross-entropy of the batch with the updated value, so that the
    weights are those of step t as in the paper. ``R`` and which classes
    have a value are buffers, ``running_recall`` and ``recall_seen``, saved
    in checkpoints; they are created for C classes at the first call (and
    by loading a checkpoint), on the logits' device.

    Only a training step changes them: in training mode
    (``self.training``) with autograd enabled. In evaluation mode, or
    under ``torch.no_grad()`` (OHEM ranks the pixels so before the step),
    the loss is computed alike but the buffers keep their values.

    Before a class has a value its ``R`` is 0 (weight 1, plain
    cross-entropy); no pixel of a batch ever uses it, since a class with
    pixels in the batch gets its value from them first. Under distributed
    training each process counts its own batch.

    Args:
        momentum (float): Weight of the previous running recall in its
            update, in [0, 1). 0 is the paper's recall of the current batch.
            Default: 0.0.
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        loss_name (str): Name of the loss item; must contain ``'loss'``.
            Default: ``'loss_recall'``.

    Raises:
        ValueError: If ``momentum`` is not a number in [0, 1).
    """

    _STATE = ('running_recall', 'recall_seen')

    def __init__(self,
                 momentum: float = 0.0,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_recall'):
        super().__init__(loss_weight, loss_name)
        if (not isinstance(momentum, numbers.Real)
                or isinstance(momentum, bool) or not 0 <= momentum < 1):
            raise ValueError(
                f'momentum must be a number in [0, 1), got {momentum!r}')
        self.momentum = float(momentum)
        self.running_recall: Tensor
        self.recall_seen: Tensor
        self.register_buffer(
            'running_recall', torch.zeros(0), persistent=True)
        self.register_buffer(
            'recall_seen', torch.zeros(0, dtype=torch.bool), persistent=True)

    def pixel_loss(self, cls_score: Tensor, label: Tensor,
                   **loss_args) -> Tensor:
        recall, seen = self._state(cls_score.shape[1], cls_score.device)
        recall, seen = updated_recall(
            recall, seen,
            *class_recall_counts(cls_score, label,
                                 loss_args['ignore_index']), self.momentum)
        loss = recall_loss(cls_score, label, recall, **loss_args)
        if self.training and torch.is_grad_enabled():
            self.running_recall.copy_(recall)
            self.recall_seen.copy_(seen)
        return loss

    def _state(self, num_classes: int,
               device: torch.device) -> Tuple[Tensor, Tensor]:
        """The running recall and which classes have one, on ``device``;
        created for ``num_classes`` at the first call."""
        if self.running_recall.numel() == 0:
            self.running_recall = torch.zeros(num_classes, device=device)
            self.recall_seen = torch.zeros(
                num_classes, dtype=torch.bool, device=device)
        elif len(self.running_recall) != num_classes:
            raise ValueError(
                f'{type(self).__name__} holds the recall of '
                f'{len(self.running_recall)} classes but the logits have '
                f'{num_classes}: give each head its own loss')
        return tuple(self._buffer_on(name, device) for name in self._STATE)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A module that has not run yet holds empty buffers: take the
        # checkpoint's number of classes. Other mismatches stay errors.
        for name in self._STATE:
            value = state_dict.get(prefix + name)
            mine = getattr(self, name)
            if value is not None and mine.numel() == 0:
                setattr(self, name,
                        torch.zeros_like(value, device=mine.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
