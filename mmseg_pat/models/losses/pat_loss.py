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
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmseg.registry import MODELS
from torch import Tensor

from .confidence_exchange import ConfidenceExchange
from .pixel_loss import PixelLoss, check_labels

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


def _check_option(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f'{name} must be one of {tuple(allowed)}, '
                         f'got {value!r}')


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
    _check_option('curve', curve, CURVES)
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
             reduction: str = 'mean') -> Tuple[Tensor, Tensor]:
    """PAT loss of a batch of logits.

    Args:
        cls_score (Tensor): Logits (N, C, H, W), at the label's resolution.
        label (Tensor): Labels (N, H, W); ``ignore_index`` marks ignored
            pixels.
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
        tau (float): Softmax temperature. Default: 1.0.
        ignore_index (int): Label of ignored pixels. Default: 255.
        reduction (str): ``'mean'`` for the scalar loss or ``'none'`` for the
            per-pixel map (N, H, W) ``w_i * loss_i / Z``, which sums to the
            scalar loss. Default: ``'mean'``.

    Returns:
        tuple[Tensor, Tensor]: The loss (scalar or (N, H, W), float32) and
        the detached current true-class confidence (N, H, W), -1 at ignored
        pixels.
    """
    _check_option('confidence', confidence, CONFIDENCE_SOURCES)
    _check_option('homogenize', homogenize, HOMOGENIZE_POWERS)
    _check_option('normalize', normalize, NORMALIZE_MODES)
    _check_option('reduction', reduction, ('mean', 'none'))
    if tau <= 0:
        raise ValueError(f'tau must be positive, got {tau}')
    if cls_score.dim() != 4 or label.shape != (cls_score.shape[0],
                                               *cls_score.shape[2:]):
        raise ValueError(
            f'expected logits (N, C, H, W) and labels (N, H, W) of the same '
            f'N, H, W; got {tuple(cls_score.shape)} and {tuple(label.shape)}')
    num_classes = cls_score.shape[1]

    # Autocast would run the exponentials in half precision: stay in fp32.
    with torch.autocast(device_type=cls_score.device.type, enabled=False):
        logits = cls_score.float()
        if tau != 1.0:
            logits = logits / tau
        class_index, gather_index = check_labels(label, num_classes,
                                                 ignore_index)
        log_p = F.log_softmax(logits, dim=1).gather(
            1, gather_index.unsqueeze(1)).squeeze(1)
        current = log_p.detach().exp()
        # Per-class log divisor; the extra last entry (+inf) is the "class"
        # of ignored pixels and turns their weight into exactly 0.
        counts = torch.bincount(
            class_index.view(-1), minlength=num_classes + 1)[:num_classes]
        power = HOMOGENIZE_POWERS[homogenize]
        log_counts = counts.clamp(min=1).float().log()
        log_divisor = power * log_counts
        # Z of normalize='none': sum over the pixels of 1 / n_k ** p, i.e.
        # the present classes ('class'), sum sqrt(n_k) ('sqrt'), |V| ('none')
        num_groups = (counts * torch.exp(-power * log_counts)).sum()
        log_divisor = torch.cat([log_divisor, log_divisor.new_full((1, ),
                                                                   math.inf)])

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
            # exp(log_w - max) keeps every factor in [0, 1]; the max cancels
            # in the weighted mean and is put back only for normalize='none'.
            shift = log_w.detach().amax().clamp(min=-_FLOAT32_MAX_LOG)
            scaled_w = log_w.sub_(shift).exp_()
            if weight is not None:
                scaled_w = scaled_w * weight.to(scaled_w)

        if normalize == 'weight':
            denom = scaled_w.detach().sum()
            scale = 1.0
        else:
            denom = num_groups.to(scaled_w)
            if shift.item() > _FLOAT32_MAX_LOG:
                warnings.warn(
                    f'PAT weights reach exp({shift.item():.0f}), beyond '
                    'float32; the loss will overflow. Use '
                    "normalize='weight' or set max_log_weight.")
            scale = shift.exp()
        # With no valid pixel (or all weights zero) every term is 0: return
        # an exact 0 that still depends on the logits, never 0/0.
        factor = scale / denom.clamp(min=torch.finfo(torch.float32).tiny)
        if reduction == 'none':
            loss = -(scaled_w * log_p) * factor
        else:
            loss = -(scaled_w * log_p).sum() * factor
    return loss, current.masked_fill(class_index == num_classes, -1.0)


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
        _check_option('curve', curve, CURVES)
        _check_option('confidence', confidence, CONFIDENCE_SOURCES)
        _check_option('homogenize', homogenize, HOMOGENIZE_POWERS)
        _check_option('normalize', normalize, NORMALIZE_MODES)
        if tau <= 0:
            raise ValueError(f'tau must be positive, got {tau}')
        self.curve = curve
        self.confidence = confidence
        self.detach_weight = detach_weight
        self.homogenize = homogenize
        self.normalize = normalize
        self.max_log_weight = max_log_weight
        self.tau = tau
        self.exchange: Optional[ConfidenceExchange] = None
        self._warned_no_memory = False

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                ignore_index: int = 255,
                avg_factor=None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Compute the loss.

        Args:
            cls_score (Tensor): Logits (N, C, H, W).
            label (Tensor): Labels (N, H, W).
            weight (Tensor, optional): Per-pixel weights (N, H, W).
            ignore_index (int): Label of ignored pixels. Default: 255.
            avg_factor: Unused; PAT normalises by its own weights.
            reduction_override (str, optional): ``'none'`` returns the
                per-pixel loss map (N, H, W), as ``OHEMPixelSampler`` needs;
                ``'mean'`` or None the scalar loss.

        Returns:
            Tensor: The loss, multiplied by ``loss_weight``.
        """
        reduction = reduction_override or 'mean'
        exchange = self.exchange
        prev = None
        if self.confidence == 'previous':
            if exchange is not None:
                prev = exchange.previous_batch(label.shape)
            elif self.training:
                self._warn_no_memory()
        loss, current = pat_loss(
            cls_score,
            label,
            weight=weight,
            prev_confidence=prev,
            curve=self.curve,
            confidence=self.confidence,
            detach_weight=self.detach_weight,
            homogenize=self.homogenize,
            normalize=self.normalize,
            max_log_weight=self.max_log_weight,
            tau=self.tau,
            ignore_index=ignore_index,
            reduction=reduction)
        if exchange is not None and reduction == 'mean':
            exchange.record(self, current, label, prev, cls_score.shape[1])
        return self.loss_weight * loss

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
