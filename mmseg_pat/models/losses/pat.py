"""PAT loss: Pixel-wise Adaptive Training for long-tailed segmentation.

Khoi Do et al., "PAT: Pixel-wise Adaptive Training for Long-tailed
Segmentation", arXiv 2404.05393. The maths follows section 2 of
``docs/method.md``:

* PCLA: each valid pixel's cross-entropy is weighted by
  ``beta = 1/2 * exp(kappa * (1 - q))`` where ``q`` is a confidence of the
  true class (the previous or the current prediction) and ``kappa = C``
  (curve ``'ina'``) or ``1`` (curve ``'inap'``).
* Class-wise homogenization (``homogenize='class'``, off by default): the
  weights of class ``k`` are divided by the number of its valid pixels in
  the batch, so every present class gets the same share of the update
  whatever its mask area; ``'sqrt'`` divides by the square root instead.
  The project's study (README, "Evidence") found that both trade overall
  mIoU for the rarest classes on some data, so the default is ``'none'``.
* Normalisation by the (detached) sum of weights makes the loss a weighted
  mean, so it is scale-free even when ``exp(kappa)`` is astronomically large.

PAT is cross-entropy per pixel times a weight: one fused
``F.cross_entropy(reduction='none')`` pass over the logits, the true
class's confidence read from it (``exp(-ce)``), and the weights computed on
maps of the labels' shape only. The weights are computed in the log domain
and in float32, so large class counts do not overflow and autocast
(fp16 / bf16) does not lose precision; nothing is read back from the
device on the training path.
"""
import logging
import math
import warnings
from contextlib import nullcontext
from typing import Optional, Tuple, Union

import torch
from mmengine.logging import print_log
from mmseg.registry import MODELS
from torch import Tensor

from .confidence_exchange import ConfidenceExchange
from .pixel_loss import (REDUCTIONS, PixelLoss, check_logits_and_labels,
                         check_option, check_positive, float_logits,
                         pixel_cross_entropy, safe_divisor)

#: Weighting curves: name -> kappa, where ``None`` means kappa = C.
CURVES = {'ina': None, 'inap': 1.0}
#: Where the confidence ``q`` of the PCLA weight comes from.
CONFIDENCE_SOURCES = ('previous', 'current')
#: How class areas are balanced: name -> p, each weight is divided by
#: ``n_k ** p`` (``n_k``: valid pixels of its class in the batch).
HOMOGENIZE_POWERS = {'class': 1.0, 'sqrt': 0.5, 'none': 0.0}
#: What the weighted sum is divided by.
NORMALIZE_MODES = ('weight', 'none')

# Above this log-weight, exp() of a raw (un-normalised) weight no longer
# fits in float32; below the other, it is no longer a normal number.
_FLOAT32_MAX_LOG = math.log(torch.finfo(torch.float32).max)
_FLOAT32_MIN_LOG = math.log(torch.finfo(torch.float32).tiny)
_LOG_2 = math.log(2.0)


def _kappa(curve: str, num_classes: int) -> float:
    check_option('curve', curve, CURVES)
    kappa = CURVES[curve]
    return float(num_classes) if kappa is None else kappa


def _largest_log_weight(num_classes: int, curve: str,
                        max_log_weight: Optional[float]) -> float:
    """log(beta) at q = 0, capped: the largest the options allow."""
    kappa = _kappa(curve, num_classes)
    top = kappa if max_log_weight is None else min(kappa, max_log_weight)
    return top - _LOG_2


def pat_log_weights(confidence: Tensor,
                    num_classes: int,
                    curve: str = 'ina',
                    max_log_weight: Optional[float] = None,
                    shift: float = 0.0) -> Tensor:
    """Log of the PCLA weight ``beta = 1/2 * exp(kappa * (1 - q))``.

    Args:
        confidence (Tensor): True-class confidence q in [0, 1], any shape.
        num_classes (int): Number of classes C (kappa for curve ``'ina'``).
        curve (str): ``'ina'`` (kappa = C) or ``'inap'`` (kappa = 1).
            Default: ``'ina'``.
        max_log_weight (float, optional): Upper bound on ``kappa * (1 - q)``.
            Default: None (no bound).
        shift (float): Subtracted from every value, in the same pass.
            Default: 0.

    Returns:
        Tensor: ``log(beta) - shift``, same shape as ``confidence``.
    """
    kappa = _kappa(curve, num_classes)
    # kappa (1 - q) - log 2 - shift in one pass over the pixels
    log_beta = torch.rsub(confidence, kappa - _LOG_2 - shift, alpha=kappa)
    if max_log_weight is not None:
        log_beta = log_beta.clamp_(max=max_log_weight - _LOG_2 - shift)
    return log_beta


def pat_weights(confidence: Tensor,
                num_classes: int,
                curve: str = 'ina',
                max_log_weight: Optional[float] = None) -> Tensor:
    """PCLA weight ``beta = 1/2 * exp(kappa * (1 - q))``.

    Only safe where ``kappa`` is small enough for float32; the loss itself
    uses :func:`pat_log_weights`. Arguments as in :func:`pat_log_weights`.
    """
    return pat_log_weights(confidence, num_classes, curve,
                           max_log_weight).exp()


def pat_confidence(prev: Optional[Tensor], current: Tensor) -> Tensor:
    """The confidence q that PAT weights each pixel by: the stored one
    where there is one, else the current one.

    The one place of this rule, used by :class:`PATLoss` and by the
    pictures of what it does.

    Args:
        prev (Tensor, optional): Stored true-class confidences in [0, 1],
            the shape of ``current``; negative or NaN where nothing is
            stored. None: nothing is stored.
        current (Tensor): The current true-class confidences (detached).

    Returns:
        Tensor: ``q``, the shape of ``current``.
    """
    if prev is None:
        return current
    prev = prev.to(current)
    return torch.where(prev >= 0, prev, current)  # NaN >= 0 is False too


def true_class_confidence(ce: Tensor, label: Tensor,
                          ignore_index: int = 255) -> Tensor:
    """The detached softmax probability of each pixel's true class,
    ``exp(-ce)``, with -1 at ignored pixels: what the memory stores.

    Args:
        ce (Tensor): Per-pixel cross-entropy, the labels' shape.
        label (Tensor): Labels.
        ignore_index (int): Label of ignored pixels. Default: 255.
    """
    return torch.exp(-ce.detach()).masked_fill_(label == ignore_index, -1.0)


def _class_pixel_counts(label: Tensor, num_classes: int,
                        ignore_index: int) -> Tuple[Tensor, Tensor]:
    """Valid pixels of each class (C + 1, float32; the last bin counts the
    ignored pixels) and each pixel's bin, by scatter_add (bincount would
    read its output size back from the device)."""
    label = label.long()
    bins = label.masked_fill(label == ignore_index, num_classes)
    flat = bins.reshape(-1)
    counts = torch.zeros(num_classes + 1, device=label.device).scatter_add_(
        0, flat, torch.ones((), device=label.device).expand(flat.numel()))
    return counts, bins


def pat_log_weight_map(confidence: Tensor,
                       label: Tensor,
                       num_classes: int,
                       curve: str = 'ina',
                       homogenize: str = 'none',
                       max_log_weight: Optional[float] = None,
                       ignore_index: int = 255,
                       shift: float = 0.0) -> Tensor:
    """Log of the weight PAT gives each pixel, before normalisation.

    ``log w_i = log beta(q_i) - p * log n_{y_i}``, where ``n_k`` is the
    number of valid pixels of class k in ``label`` and ``p`` the power of
    ``homogenize``; ``-inf`` at ignored pixels (weight 0). The loss divides
    ``w`` by its sum; the pictures show it.

    Args:
        confidence (Tensor): The confidence q of each pixel (see
            :func:`pat_confidence`), the labels' shape.
        label (Tensor): Labels (N, d1, ..., dk).
        num_classes (int): Number of classes C.
        curve (str): As in :func:`pat_log_weights`. Default: ``'ina'``.
        homogenize (str): A key of :data:`HOMOGENIZE_POWERS`.
            Default: ``'none'``.
        max_log_weight (float, optional): As in :func:`pat_log_weights`.
            Default: None.
        ignore_index (int): Label of ignored pixels. Default: 255.
        shift (float): Subtracted from every value, in the same pass.
            Default: 0.

    Returns:
        Tensor: ``log w - shift``, float32, the labels' shape.
    """
    check_option('homogenize', homogenize, HOMOGENIZE_POWERS)
    log_w = pat_log_weights(confidence, num_classes, curve, max_log_weight,
                            shift)
    power = HOMOGENIZE_POWERS[homogenize]
    if not power:
        return torch.where(label == ignore_index, -math.inf, log_w)
    counts, bins = _class_pixel_counts(label, num_classes, ignore_index)
    log_divisor = counts.clamp_(min=1).log_().mul_(power)
    log_divisor[num_classes] = math.inf  # the bin of ignored pixels
    return log_w.sub_(log_divisor[bins])


def check_pat_options(curve: str = 'ina',
                      confidence: str = 'previous',
                      homogenize: str = 'none',
                      normalize: str = 'weight',
                      max_log_weight: Optional[float] = None,
                      tau: float = 1.0) -> None:
    """Raise a ValueError naming the first PAT option out of its range."""
    check_option('curve', curve, CURVES)
    check_option('confidence', confidence, CONFIDENCE_SOURCES)
    check_option('homogenize', homogenize, HOMOGENIZE_POWERS)
    check_option('normalize', normalize, NORMALIZE_MODES)
    check_positive('tau', tau)
    if max_log_weight is not None:
        check_positive('max_log_weight', max_log_weight, allow_zero=True)


def _raw_normalizer(label: Tensor, num_classes: int, homogenize: str,
                    ignore_index: int) -> Tensor:
    """Z of ``normalize='none'``: the sum over the valid pixels of
    ``1 / n_k ** p``, i.e. the number of present classes (``'class'``),
    ``sum_k sqrt(n_k)`` (``'sqrt'``) or of valid pixels (``'none'``)."""
    power = HOMOGENIZE_POWERS[homogenize]
    if not power:
        return (label != ignore_index).sum(dtype=torch.float32)
    counts = _class_pixel_counts(label, num_classes,
                                 ignore_index)[0][:num_classes]
    return (counts * counts.clamp(min=1).pow(-power)).sum()


def _warn_if_raw_weights_overflow(largest_log_weight: float) -> None:
    """Say when an absolute (un-normalised) weight can exceed float32; from
    the options alone, so nothing is read from the device."""
    if largest_log_weight > _FLOAT32_MAX_LOG:
        warnings.warn(
            f'PAT weights reach exp({largest_log_weight:.0f}) at pixels '
            'whose confidence is near 0, beyond float32: the un-normalised '
            "loss overflows there. Use normalize='weight' (without "
            'avg_factor) or set max_log_weight.')


def _fixed_shift_weights(q: Tensor, fresh: bool, label: Tensor,
                         num_classes: int, curve: str,
                         max_log_weight: Optional[float],
                         ignore_index: int, top: float) -> Tensor:
    """``exp(log beta(q) - top)``, 0 at ignored pixels, in place where it
    can be: the default path, a few passes over maps of the labels' shape.

    With ``top`` the largest log-weight the options allow,
    ``log beta - top = kappa (1 - q) - log 2 - top``, i.e. ``-kappa q``
    without a cap. ``fresh``: ``q`` may be overwritten.
    """
    kappa = _kappa(curve, num_classes)
    offset = kappa - _LOG_2 - top  # 0 unless max_log_weight < kappa
    log_w = q.mul_(-kappa) if fresh else q.mul(-kappa)
    if offset:
        log_w = log_w.add_(offset)
    if max_log_weight is not None:
        log_w = log_w.clamp_(max=max_log_weight - _LOG_2 - top)
    return log_w.exp_().masked_fill_(label == ignore_index, 0.0)


def pat_loss_from_cross_entropy(ce: Tensor,
                                label: Tensor,
                                num_classes: int,
                                prev_confidence: Optional[Tensor] = None,
                                weight: Optional[Tensor] = None,
                                curve: str = 'ina',
                                confidence: str = 'previous',
                                detach_weight: bool = True,
                                homogenize: str = 'none',
                                normalize: str = 'weight',
                                max_log_weight: Optional[float] = None,
                                ignore_index: int = 255,
                                reduction: str = 'mean',
                                avg_factor: Optional[Union[float,
                                                           Tensor]] = None,
                                current: Optional[Tensor] = None) -> Tensor:
    """PAT's weighting and reduction of the per-pixel cross-entropy.

    The part of :func:`pat_loss` after ``F.cross_entropy``, shared with
    :class:`PATLoss`; the options are not checked again here. The true
    class's confidence is ``exp(-ce)``, and the weights are computed on
    maps of the labels' shape only.

    Args:
        ce (Tensor): Float32 cross-entropy of each pixel (N, d1, ..., dk),
            0 at ignored pixels (see
            :func:`~mmseg_pat.models.losses.pixel_loss.pixel_cross_entropy`).
        label (Tensor): The labels, same shape.
        num_classes (int): Number of classes C.
        current (Tensor, optional): ``exp(-ce)``, detached, where the
            caller has it already (any value at ignored pixels, e.g.
            :func:`true_class_confidence`'s -1); it is not modified.
            Not used where the weight keeps its gradient. Default: None
            (computed here).
        Others: as in :func:`pat_loss`.

    Returns:
        Tensor: The loss, a float32 scalar, or the map for
        ``reduction='none'``.
    """
    if ce.numel() == 0:  # an empty batch or crop: nothing to learn
        return ce if reduction == 'none' else ce.sum()
    # exp(log_w - shift) keeps every weight in [0, 1]; the shift cancels in
    # the weighted mean and is put back only for an absolute divisor. It is
    # the largest log-weight the options allow, subtracted in the same pass,
    # unless the smallest weight would then no longer be a normal float32
    # (C > 87, or class areas dividing): then the batch's largest.
    top = _largest_log_weight(num_classes, curve, max_log_weight)
    fixed = not HOMOGENIZE_POWERS[homogenize] and (
        top + _LOG_2 < -_FLOAT32_MIN_LOG)
    keeps_grad = not detach_weight and confidence == 'current'
    if current is None or keeps_grad:
        fresh = True
        with torch.no_grad() if not keeps_grad else nullcontext():
            current = ce.neg().exp_()
    else:
        fresh = False
    with torch.no_grad() if detach_weight else nullcontext():
        if confidence == 'current' or prev_confidence is None:
            q = current
        else:  # a new map: the stored confidence, current where none
            q, fresh = pat_confidence(prev_confidence, current.detach()), True
        if fixed and not keeps_grad:
            shift = top
            w = _fixed_shift_weights(q, fresh, label, num_classes, curve,
                                     max_log_weight, ignore_index, top)
        else:
            log_w = pat_log_weight_map(q, label, num_classes, curve,
                                       homogenize, max_log_weight,
                                       ignore_index, top if fixed else 0.0)
            if fixed:
                shift = top
            else:
                shift = log_w.detach().amax().clamp(min=-_FLOAT32_MAX_LOG)
                log_w = log_w.sub_(shift)
            w = log_w.exp_()
        if weight is not None:
            w = w * weight.to(w)

    total = ce * w if reduction == 'none' else torch.dot(
        w.reshape(-1), ce.reshape(-1))
    # With no valid pixel (or all weights zero) every term is 0: the safe
    # divisor keeps it an exact 0 that still depends on the logits.
    if normalize == 'weight' and avg_factor is None:
        return total / safe_divisor(w.detach().sum())
    _warn_if_raw_weights_overflow(top)
    scale = math.exp(shift) if fixed else shift.exp()
    denom = avg_factor if avg_factor is not None else _raw_normalizer(
        label, num_classes, homogenize, ignore_index)
    return total * scale / safe_divisor(denom)


def pat_loss(cls_score: Tensor,
             label: Tensor,
             weight: Optional[Tensor] = None,
             prev_confidence: Optional[Tensor] = None,
             curve: str = 'ina',
             confidence: str = 'previous',
             detach_weight: bool = True,
             homogenize: str = 'none',
             normalize: str = 'weight',
             max_log_weight: Optional[float] = None,
             tau: float = 1.0,
             ignore_index: int = 255,
             reduction: str = 'mean',
             avg_factor: Optional[float] = None) -> Tensor:
    """PAT loss of a batch of logits (``docs/method.md`` section 2).

    Args:
        cls_score (Tensor): Logits (N, C, d1, ..., dk), e.g. (N, C, H, W)
            at the label's resolution.
        label (Tensor): Integer labels (N, d1, ..., dk); ``ignore_index``
            marks ignored pixels.
        weight (Tensor, optional): Per-pixel weights, the labels' shape,
            that multiply the PAT weights (e.g. the OHEM sampler's map).
            Default: None.
        prev_confidence (Tensor, optional): Stored true-class confidence
            in [0, 1] from the previous visit of each pixel, the labels'
            shape; a negative or NaN value means "never seen". Only used
            when ``confidence='previous'``. Default: None.
        curve (str): ``'ina'`` (kappa = C) or ``'inap'`` (kappa = 1).
            Default: ``'ina'``.
        confidence (str): ``'previous'`` or ``'current'``. Pixels without a
            stored confidence fall back to the current one, detached
            (:func:`pat_confidence`). Default: ``'previous'``.
        detach_weight (bool): Treat the weight as a constant. ``False`` with
            ``confidence='current'`` reproduces the authors' gradient.
            Default: True.
        homogenize (str): ``'class'`` divides each weight by the number
            ``n_k`` of valid pixels of its class in the batch, ``'sqrt'``
            by ``sqrt(n_k)`` (halfway, in log scale), ``'none'`` by
            nothing. Default: ``'none'``.
        normalize (str): ``'weight'`` divides by the detached sum of weights;
            ``'none'`` divides by the sum over the valid pixels of the
            homogenization divisor's inverse: the number of present
            classes (``'class'``), ``sum_k sqrt(n_k)`` (``'sqrt'``) or the
            number of valid pixels (``'none'``, the authors' raw scale).
            Default: ``'weight'``.
        max_log_weight (float, optional): Cap on ``kappa * (1 - q)``.
            Default: None.
        tau (float): Softmax temperature, > 0. Default: 1.0.
        ignore_index (int): Label of ignored pixels. Default: 255.
        reduction (str): ``'mean'`` or ``'sum'`` for the scalar loss (the
            same: PAT is already normalised by Z), ``'none'`` for the
            per-pixel map ``w_i * loss_i / Z``, which sums to it.
            Default: ``'mean'``.
        avg_factor (float, optional): Replaces Z. Default: None.

    Returns:
        Tensor: The loss, a float32 scalar or the per-pixel map.

    Raises:
        ValueError: For an option out of its range, logits and labels of
            mismatched shapes, or (on the CPU) a label neither in [0, C)
            nor ``ignore_index``.
    """
    check_pat_options(curve, confidence, homogenize, normalize,
                      max_log_weight, tau)
    check_option('reduction', reduction, REDUCTIONS)
    check_logits_and_labels(cls_score, label)
    # Autocast would run the exponentials in half precision: stay in fp32.
    with torch.autocast(device_type=cls_score.device.type, enabled=False):
        ce = pixel_cross_entropy(
            float_logits(cls_score, tau), label, ignore_index)
        return pat_loss_from_cross_entropy(
            ce, label, cls_score.shape[1], prev_confidence, weight, curve,
            confidence, detach_weight, homogenize, normalize,
            max_log_weight, ignore_index, reduction, avg_factor)


@MODELS.register_module()
class PATLoss(PixelLoss):
    """Pixel-wise Adaptive Training loss (arXiv 2404.05393).

    Args:
        curve (str): Weighting curve, ``'ina'`` (kappa = C) or ``'inap'``
            (kappa = 1). Default: ``'ina'``.
        confidence (str): ``'previous'`` (the confidence stored by
            :class:`PrevPredictionHook`; current and detached where nothing
            is stored) or ``'current'``. Default: ``'previous'``.
        detach_weight (bool): Treat the PCLA weight as a constant.
            Default: True.
        homogenize (str): ``'none'``; ``'class'`` to give every class
            present in the batch the same share of the update (more tail
            IoU, less head IoU; see the README's evidence); ``'sqrt'`` to
            divide by the square root of the class's pixel count, in
            between. Default: ``'none'``.
        normalize (str): ``'weight'`` or ``'none'``. Default: ``'weight'``.
        max_log_weight (float, optional): Cap on ``kappa * (1 - q)``.
            Default: None.
        tau (float): Softmax temperature. Default: 1.0.
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        loss_name (str): Name of the loss item; must contain ``'loss'`` to
            be back-propagated by MMSeg. Default: ``'loss_pat'``.

    Attributes:
        exchange (ConfidenceExchange | None): Set by
            :class:`PrevPredictionHook` for one training iteration: the
            batch's stored confidences, and where the decode head's loss
            leaves its current ones.
    """

    def __init__(self,
                 curve: str = 'ina',
                 confidence: str = 'previous',
                 detach_weight: bool = True,
                 homogenize: str = 'none',
                 normalize: str = 'weight',
                 max_log_weight: Optional[float] = None,
                 tau: float = 1.0,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_pat'):
        super().__init__(loss_weight, loss_name)
        check_pat_options(curve, confidence, homogenize, normalize,
                          max_log_weight, tau)
        self.curve = curve
        self.confidence = confidence
        self.detach_weight = detach_weight
        self.homogenize = homogenize
        self.normalize = normalize
        self.max_log_weight = max_log_weight
        self.tau = tau
        self.exchange: Optional[ConfidenceExchange] = None
        self._warned_no_memory = False

    def pixel_loss(self,
                   cls_score: Tensor,
                   label: Tensor,
                   weight: Optional[Tensor] = None,
                   ignore_index: int = 255,
                   reduction: str = 'mean',
                   avg_factor: Optional[float] = None) -> Tensor:
        exchange = self.exchange
        prev = None
        if self.confidence == 'previous':
            if exchange is not None:
                # None where the labels are not this batch's (N, H, W) maps,
                # e.g. PointRend's points: the current confidence is used
                prev = exchange.previous_batch(label.shape)
            elif self.training:
                self._warn_no_memory()
        with torch.autocast(device_type=cls_score.device.type,
                            enabled=False):
            ce = pixel_cross_entropy(
                float_logits(cls_score, self.tau), label, ignore_index)
            # what the hook stores, computed once and shared with the
            # weights
            current = true_class_confidence(
                ce, label, ignore_index) if (exchange is not None and
                                             reduction != 'none') else None
            loss = pat_loss_from_cross_entropy(
                ce, label, cls_score.shape[1], prev, weight, self.curve,
                self.confidence, self.detach_weight, self.homogenize,
                self.normalize, self.max_log_weight, ignore_index,
                reduction, avg_factor, current)
            if current is not None:
                exchange.record(self, current, label)
        return loss

    def _warn_no_memory(self) -> None:
        if self._warned_no_memory:
            return
        self._warned_no_memory = True
        message = (
            "PATLoss(confidence='previous') is training without "
            'PrevPredictionHook: every pixel falls back to the current '
            'confidence, the variant that lost the tail gain in the '
            "project's study. Add custom_hooks = [dict(type="
            "'PrevPredictionHook')] to the config, or set "
            "confidence='current' to say that this is what you want.")
        warnings.warn(message)
        print_log(message, logger='current', level=logging.WARNING)
