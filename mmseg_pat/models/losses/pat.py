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

Everything is computed in the log domain and in float32, so large class
counts do not overflow and autocast (fp16 / bf16) does not lose precision.
"""
import logging
import math
import warnings
from contextlib import nullcontext
from typing import Optional

import torch
from mmengine.logging import print_log
from mmseg.registry import MODELS
from torch import Tensor

from .confidence_exchange import ConfidenceExchange
from .pixel_loss import (REDUCTIONS, PixelLoss, check_option, check_positive,
                         true_class_log_prob)

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
# fits in float32.
_FLOAT32_MAX_LOG = math.log(torch.finfo(torch.float32).max)


def pat_log_weights(confidence: Tensor,
                    num_classes: int,
                    curve: str = 'ina',
                    max_log_weight: Optional[float] = None) -> Tensor:
    """Log of the PCLA weight ``beta = 1/2 * exp(kappa * (1 - q))``.

    Args:
        confidence (Tensor): True-class confidence q in [0, 1], any shape.
        num_classes (int): Number of classes C (kappa for curve ``'ina'``).
        curve (str): ``'ina'`` (kappa = C) or ``'inap'`` (kappa = 1).
            Default: ``'ina'``.
        max_log_weight (float, optional): Upper bound on ``kappa * (1 - q)``.
            Default: None (no bound).

    Returns:
        Tensor: ``log(beta)``, same shape as ``confidence``.
    """
    check_option('curve', curve, CURVES)
    kappa = CURVES[curve]
    kappa = float(num_classes) if kappa is None else kappa
    # in place on the fresh tensor from clamp(): this runs on every pixel
    exponent = confidence.clamp(0.0, 1.0).mul_(-kappa).add_(kappa)
    if max_log_weight is not None:
        exponent = exponent.clamp_(max=max_log_weight)
    return exponent.sub_(math.log(2.0))


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


def pat_loss_from_log_prob(log_p: Tensor,
                           class_index: Tensor,
                           num_classes: int,
                           prev_confidence: Optional[Tensor] = None,
                           weight: Optional[Tensor] = None,
                           curve: str = 'ina',
                           confidence: str = 'previous',
                           detach_weight: bool = True,
                           homogenize: str = 'none',
                           normalize: str = 'weight',
                           max_log_weight: Optional[float] = None,
                           reduction: str = 'mean',
                           avg_factor: Optional[float] = None) -> Tensor:
    """PAT's weighting and reduction of true-class log-probabilities.

    The part of :func:`pat_loss` after the log-softmax, shared with
    :class:`PATLoss`; the options are not checked again here.

    Args:
        log_p (Tensor): Float32 log-probability of each pixel's true class
            (N, H, W), finite at ignored pixels.
        class_index (Tensor): The labels (N, H, W) with ``num_classes`` at
            ignored pixels.
        num_classes (int): Number of classes C.
        Others: as in :func:`pat_loss`.

    Returns:
        Tensor: The loss, a float32 scalar, or (N, H, W) for
        ``reduction='none'``.
    """
    if log_p.numel() == 0:  # an empty batch or crop: nothing to learn
        return log_p.sum() if reduction != 'none' else log_p * 0
    current = log_p.detach().exp()
    # Pixels per class; the extra last bin collects the ignored pixels.
    # (scatter_add, not bincount, which waits for the device to size its
    # output)
    counts = log_p.new_zeros(num_classes + 1).scatter_add_(
        0, class_index.reshape(-1), torch.ones_like(log_p).reshape(-1))
    counts = counts[:num_classes]
    power = HOMOGENIZE_POWERS[homogenize]
    log_counts = counts.clamp(min=1).log()
    # Z of normalize='none': sum over the pixels of 1 / n_k ** p, i.e. the
    # present classes ('class'), sum sqrt(n_k) ('sqrt'), |V| ('none')
    num_groups = (counts * torch.exp(-power * log_counts)).sum()
    # +inf for the "class" of ignored pixels turns their weight into 0
    log_divisor = torch.cat([power * log_counts,
                             log_counts.new_full((1, ), math.inf)])

    with torch.no_grad() if detach_weight else nullcontext():
        if confidence == 'current':
            q = current if detach_weight else log_p.exp()
        elif prev_confidence is not None:
            prev = prev_confidence.to(current)
            q = torch.where(prev >= 0, prev, current)  # NaN < 0 too
        else:
            q = current
        log_w = pat_log_weights(q, num_classes, curve, max_log_weight)
        log_w = log_w.sub_(log_divisor[class_index])
        # exp(log_w - max) keeps every factor in [0, 1]; the max cancels in
        # the weighted mean and is put back only for an absolute divisor.
        shift = log_w.detach().amax().clamp(min=-_FLOAT32_MAX_LOG)
        scaled_w = log_w.sub_(shift).exp_()
        if weight is not None:
            scaled_w = scaled_w * weight.to(scaled_w)

    if normalize == 'weight' and avg_factor is None:
        denom = scaled_w.detach().sum()
        scale = 1.0
    else:
        denom = num_groups if avg_factor is None else torch.as_tensor(
            avg_factor, dtype=torch.float32, device=log_p.device)
        if shift.item() > _FLOAT32_MAX_LOG:
            warnings.warn(
                f'PAT weights reach exp({shift.item():.0f}), beyond '
                'float32; the loss will overflow. Use '
                "normalize='weight' or set max_log_weight.")
        scale = shift.exp()
    # With no valid pixel (or all weights zero) every term is 0: return an
    # exact 0 that still depends on the logits, never 0/0.
    factor = scale / denom.clamp(min=torch.finfo(torch.float32).tiny)
    loss = -(scaled_w * log_p) * factor
    return loss if reduction == 'none' else loss.sum()


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
        cls_score (Tensor): Logits (N, C, H, W), at the label's resolution.
        label (Tensor): Integer labels (N, H, W); ``ignore_index`` marks
            ignored pixels.
        weight (Tensor, optional): Per-pixel weights (N, H, W) that multiply
            the PAT weights (e.g. the OHEM sampler's map). Default: None.
        prev_confidence (Tensor, optional): Stored true-class confidence
            (N, H, W) in [0, 1] from the previous visit of each pixel; a
            negative or NaN value means "never seen". Only used when
            ``confidence='previous'``. Default: None.
        curve (str): ``'ina'`` (kappa = C) or ``'inap'`` (kappa = 1).
            Default: ``'ina'``.
        confidence (str): ``'previous'`` or ``'current'``. Pixels without a
            stored confidence fall back to the current one, detached.
            Default: ``'previous'``.
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
            per-pixel map (N, H, W) ``w_i * loss_i / Z``, which sums to it.
            Default: ``'mean'``.
        avg_factor (float, optional): Replaces Z. Default: None.

    Returns:
        Tensor: The loss, a float32 scalar or (N, H, W).
    """
    check_pat_options(curve, confidence, homogenize, normalize,
                      max_log_weight, tau)
    check_option('reduction', reduction, REDUCTIONS)
    # Autocast would run the exponentials in half precision: stay in fp32.
    with torch.autocast(device_type=cls_score.device.type, enabled=False):
        log_p, class_index = true_class_log_prob(cls_score.float() / tau,
                                                 label, ignore_index)
        return pat_loss_from_log_prob(
            log_p, class_index, cls_score.shape[1], prev_confidence, weight,
            curve, confidence, detach_weight, homogenize, normalize,
            max_log_weight, reduction, avg_factor)


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

    def pixel_loss(self, cls_score: Tensor, label: Tensor,
                   **reduction) -> Tensor:
        exchange = self.exchange
        prev = None
        if self.confidence == 'previous':
            if exchange is not None:
                prev = exchange.previous_batch(label.shape)
            elif self.training:
                self._warn_no_memory()
        with torch.autocast(device_type=cls_score.device.type,
                            enabled=False):
            log_p, class_index = true_class_log_prob(
                cls_score.float() / self.tau, label,
                reduction['ignore_index'])
            loss = pat_loss_from_log_prob(
                log_p, class_index, cls_score.shape[1], prev,
                reduction['weight'], self.curve, self.confidence,
                self.detach_weight, self.homogenize, self.normalize,
                self.max_log_weight, reduction['reduction'],
                reduction['avg_factor'])
        if exchange is not None and reduction['reduction'] != 'none':
            current = log_p.detach().exp().masked_fill_(
                class_index == cls_score.shape[1], -1.0)
            exchange.record(self, current, label, prev, cls_score.shape[1])
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
