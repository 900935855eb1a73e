"""Pieces shared by the project's per-pixel softmax losses.

PATLoss and the baselines of ``docs/method.md`` section 4 (BLV,
class-weighted cross-entropy, softmax focal loss, logit adjustment) follow
one contract, MMSeg's ``CrossEntropyLoss``'s: logits (N, C, d1, ..., dk)
and integer labels (N, d1, ..., dk), so (N, C, H, W) maps and PointRend's
(N, C, P) points alike; per-pixel weights (such as ``OHEMPixelSampler``'s
map) multiply each pixel's loss; ignored pixels contribute exactly 0 and
are never used as an index; an empty batch or crop gives 0;
``reduction='none'`` returns the per-pixel map. This module holds that
contract, and its checks, once.

Each loss is one fused ``F.cross_entropy(..., reduction='none')`` pass over
the logits, weighted per pixel, and reads nothing back from the device on
its training path: a host synchronisation stalls the GPU's queue. The
checks that must read a value (are the labels in range? was a training
loss NaN?) run on a module's first call and then every
:data:`CHECK_INTERVAL` calls, in one read. On the CPU every call is
covered anyway: the error ``F.cross_entropy`` raises for a label out of
range is turned into the clear one. On CUDA such a label is a device-side
assert that names no value, which is why the periodic check exists.
"""
import logging
import math
import numbers
import warnings
from typing import Callable, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor

#: Reductions a loss accepts as ``reduction_override``.
REDUCTIONS = ('mean', 'sum', 'none')
#: A loss module checks its label values, and whether a training loss since
#: the last check was NaN or inf, on its first call and then once every
#: this many calls: each check reads one value back from the device.
CHECK_INTERVAL = 100

_TINY = torch.finfo(torch.float32).tiny


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


def check_label_dtype(label: Tensor) -> None:
    """Raise a ValueError unless the labels are integers."""
    if label.dtype == torch.bool or label.is_floating_point() or (
            label.is_complex()):
        raise ValueError(
            f'labels must be integer class indices, got a {label.dtype} '
            'tensor (1.7 would be read as class 1). Load the label maps with '
            "MMSeg's LoadAnnotations, or convert them with .long().")


def check_logits_and_labels(cls_score: Tensor, label: Tensor) -> None:
    """Raise a ValueError unless the logits are (N, C, d1, ..., dk) and the
    labels integer (N, d1, ..., dk). Reads nothing from the device.

    Args:
        cls_score (Tensor): Logits.
        label (Tensor): Labels.
    """
    if cls_score.dim() < 2 or label.shape != (cls_score.shape[0],
                                              *cls_score.shape[2:]):
        raise ValueError(
            'expected logits (N, C, d1, ..., dk) and labels (N, d1, ..., '
            f'dk), e.g. (N, C, H, W) and (N, H, W); got '
            f'{tuple(cls_score.shape)} and {tuple(label.shape)}')
    check_label_dtype(label)


def labels_out_of_range(label: Tensor, num_classes: int,
                        ignore_index: int) -> Tensor:
    """Whether a label is neither in [0, C) nor ``ignore_index``: a bool
    scalar on the labels' device (nothing is read back)."""
    outside = (label < 0) | (label >= num_classes)
    return (outside & (label != ignore_index)).any()


def check_labels(label: Tensor, num_classes: int, ignore_index: int) -> None:
    """Raise a ValueError naming the labels that are out of range.

    Reads one value back from the device (more when it raises); the losses
    call it periodically, not on every call (:data:`CHECK_INTERVAL`).

    Args:
        label (Tensor): Labels (N, d1, ..., dk).
        num_classes (int): Number of classes C of the logits.
        ignore_index (int): Label value that marks ignored pixels.

    Raises:
        ValueError: If the labels are not integers, or a label is neither
            in [0, C) nor ``ignore_index``.
    """
    check_label_dtype(label)
    if not bool(labels_out_of_range(label, num_classes, ignore_index)):
        return
    bad = (label != ignore_index) & ((label < 0) | (label >= num_classes))
    values = torch.unique(label[bad]).tolist()
    raise ValueError(
        f'label values {values[:10]} are outside [0, {num_classes}) and '
        f'are not ignore_index={ignore_index}. Check that num_classes of '
        'the decode head matches the dataset, that reduce_zero_label is '
        'set as the dataset needs, and that void pixels are mapped to '
        'the ignore index.')


def float_logits(cls_score: Tensor, tau: float = 1.0) -> Tensor:
    """The logits in float32, divided by ``tau``; no copy when they already
    are float32 and ``tau`` is 1."""
    logits = cls_score.float()
    return logits if tau == 1.0 else logits / tau


def per_class(values: Tensor, ndim: int) -> Tensor:
    """A (C, ) tensor as a view that broadcasts along the class axis of
    logits (N, C, d1, ..., dk) of ``ndim`` dimensions."""
    return values.view(1, -1, *(1, ) * (ndim - 2))


def pixel_cross_entropy(logits: Tensor,
                        label: Tensor,
                        ignore_index: int = 255,
                        class_weight: Optional[Tensor] = None) -> Tensor:
    """Cross-entropy of every pixel: one fused ``F.cross_entropy`` pass.

    Args:
        logits (Tensor): Logits (N, C, d1, ..., dk), as they are to be used
            (the caller casts them to float32).
        label (Tensor): Integer labels (N, d1, ..., dk).
        ignore_index (int): Label of ignored pixels. Default: 255.
        class_weight (Tensor, optional): Weight of each class (C, ), which
            multiplies the loss of its pixels. Default: None.

    Returns:
        Tensor: ``-class_weight[y] * log softmax(z)[y]`` (N, d1, ..., dk),
        exactly 0 at ignored pixels.

    Raises:
        ValueError: On the CPU, if a label is neither in [0, C) nor
            ``ignore_index`` (on CUDA that is a device-side assert).
    """
    try:
        return F.cross_entropy(
            logits,
            label.long(),
            weight=class_weight,
            ignore_index=ignore_index,
            reduction='none')
    except (IndexError, RuntimeError):
        # "Target 7 is out of bounds": say which labels, and why
        if label.device.type == 'cpu':
            check_labels(label, logits.shape[1], ignore_index)
        raise


def class_weight_map(label: Tensor, class_weight: Tensor,
                     ignore_index: int) -> Tensor:
    """``class_weight[y]`` of every pixel, 0 where ignored.

    Args:
        label (Tensor): Labels (N, d1, ..., dk).
        class_weight (Tensor): Weight of each class (C, ).
        ignore_index (int): Label of ignored pixels.

    Returns:
        Tensor: Float32 weights of the labels' shape.
    """
    num_classes = len(class_weight)
    table = class_weight.to(label.device, torch.float32)
    # The extra last entry is the "class" of ignored pixels.
    table = torch.cat([table, table.new_zeros(1)])
    label = label.long()
    return table[label.masked_fill(label == ignore_index, num_classes)]


def safe_divisor(value: Union[float, Tensor]) -> Union[float, Tensor]:
    """``value`` as a divisor of a sum of per-pixel terms: at least float32's
    smallest normal number, so that a sum of zeros over a zero count stays
    an exact 0 (never 0/0). A number stays a number: making it a tensor
    would copy it to the device, a host synchronisation on CUDA."""
    if isinstance(value, Tensor):
        return value.float().clamp(min=_TINY)
    return max(float(value), _TINY)


def reduce_pixel_loss(pixel_loss: Tensor,
                      norm_weight: Callable[[], Tensor],
                      reduction: str = 'mean',
                      avg_factor: Optional[Union[float, Tensor]] = None
                      ) -> Tensor:
    """Reduce a per-pixel loss map, without reading from the device.

    Args:
        pixel_loss (Tensor): Weighted per-pixel loss, 0 at ignored pixels.
        norm_weight (Callable[[], Tensor]): Returns the weight of each pixel
            in the mean (a float or bool map of the same shape), 0 at
            ignored pixels; called only when the mean needs it.
        reduction (str): ``'mean'``: ``sum(pixel_loss) / sum(norm_weight)``
            (exactly 0 when no pixel has weight); ``'sum'``; or ``'none'``:
            the map itself. Default: ``'mean'``.
        avg_factor (float | Tensor, optional): Replaces
            ``sum(norm_weight)`` as the divisor of ``'mean'``.
            Default: None.

    Returns:
        Tensor: The loss, a scalar or the map.
    """
    check_option('reduction', reduction, REDUCTIONS)
    if reduction == 'none':
        return pixel_loss
    total = pixel_loss.sum()
    if reduction == 'sum':
        return total
    if avg_factor is None:
        avg_factor = norm_weight().sum(dtype=torch.float32)
    return total / safe_divisor(avg_factor)


def valid_weight(label: Tensor,
                 ignore_index: int,
                 weight: Optional[Tensor] = None) -> Tensor:
    """Each pixel's weight in a mean over the valid pixels: ``weight`` (or
    1), 0 where ignored."""
    valid = label != ignore_index
    return valid if weight is None else valid * weight


def reduce_valid_pixel_loss(pixel_loss: Tensor,
                            label: Tensor,
                            ignore_index: int,
                            weight: Optional[Tensor] = None,
                            reduction: str = 'mean',
                            avg_factor: Optional[Union[float, Tensor]] = None
                            ) -> Tensor:
    """Multiply a per-pixel loss by the per-pixel ``weight`` (if any) and
    reduce it as a mean over the valid pixels' summed weight
    (:func:`reduce_pixel_loss` with :func:`valid_weight`)."""
    if weight is not None:
        weight = weight.float()
        pixel_loss = pixel_loss * weight
    return reduce_pixel_loss(
        pixel_loss, lambda: valid_weight(label, ignore_index, weight),
        reduction, avg_factor)


class PixelLoss(nn.Module):
    """Base of the package's losses: MMSeg's loss contract in one place.

    It holds ``loss_weight`` and ``loss_name``, implements MMSeg's
    ``forward`` with its checks (the periodic ones of :data:`CHECK_INTERVAL`
    included); a subclass implements :meth:`pixel_loss`.

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
        self._calls = 0
        # whether a training loss since the last check was NaN or inf, kept
        # on the device until the check reads it
        self._non_finite: Optional[Tensor] = None
        self._said_non_finite = False

    @property
    def loss_name(self) -> str:
        """Name of the loss item in the loss dict."""
        return self._loss_name

    def pixel_loss(self, cls_score: Tensor, label: Tensor,
                   **loss_args) -> Tensor:
        """The loss before ``loss_weight``; ``loss_args`` holds ``weight``,
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
            cls_score (Tensor): Logits (N, C, d1, ..., dk), e.g.
                (N, C, H, W).
            label (Tensor): Labels (N, d1, ..., dk).
            weight (Tensor, optional): Per-pixel weights, the labels' shape.
                Default: None.
            ignore_index (int): Label of ignored pixels. Default: 255.
            avg_factor (float, optional): Divisor of the mean.
                Default: None (the summed weight of valid pixels).
            reduction_override (str, optional): ``'none'`` returns the
                per-pixel map (the labels' shape), ``'sum'`` the sum;
                ``'mean'`` or None the mean. Default: None.

        Returns:
            Tensor: The loss, multiplied by ``loss_weight``.
        """
        reduction = reduction_override or 'mean'
        check_option('reduction', reduction, REDUCTIONS)
        check_logits_and_labels(cls_score, label)
        if self._calls % CHECK_INTERVAL == 0:
            self._check(label, cls_score.shape[1], ignore_index)
        self._calls += 1
        loss = self.loss_weight * self.pixel_loss(
            cls_score,
            label,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            avg_factor=avg_factor)
        if self.training and reduction != 'none':
            non_finite = ~torch.isfinite(loss.detach())
            self._non_finite = non_finite if self._non_finite is None else (
                self._non_finite | non_finite)
        return loss

    def _buffer_on(self, name: str, device: torch.device) -> Tensor:
        """The buffer ``name``, moved to ``device`` once: a buffer set after
        the model was moved (e.g. by ``ClassCountsHook``) would otherwise be
        copied on every call."""
        value = getattr(self, name)
        if value is not None and value.device != device:
            value = value.to(device)
            setattr(self, name, value)
        return value

    def _check(self, label: Tensor, num_classes: int,
               ignore_index: int) -> None:
        """The periodic checks, in one read from the device: the labels of
        this call, and the training losses since the last check."""
        alarm = labels_out_of_range(label, num_classes, ignore_index)
        non_finite, self._non_finite = self._non_finite, None
        if non_finite is not None:
            alarm = alarm | non_finite
        if not bool(alarm):
            return
        check_labels(label, num_classes, ignore_index)  # raises if labels
        if self._said_non_finite:
            return
        self._said_non_finite = True
        message = (
            f'{type(self).__name__} ({self.loss_name}) was NaN or inf in a '
            f'training iteration of its last {CHECK_INTERVAL} calls: the '
            'logits hold NaN or inf, so the run is diverging (or an input '
            'is broken). Lower the learning rate, clip gradients '
            '(optim_wrapper.clip_grad), or check the images and labels.')
        warnings.warn(message)
        print_log(message, logger='current', level=logging.WARNING)
