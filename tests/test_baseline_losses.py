"""The long-tail baseline losses against independent references: PyTorch's
``F.cross_entropy``, hand-computed values and naive per-pixel loops."""
import json
import math
import os.path as osp
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.models.losses import CrossEntropyLoss
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample

from mmseg_pat import STACK
from mmseg_pat.datasets.class_statistics import (class_pixel_counts,
                                                 save_class_counts)
from mmseg_pat.evaluation.metrics import long_tail_iou_metric  # noqa: F401
from mmseg_pat.models.losses.blv import (blv_loss, blv_perturbation,
                                         blv_variation_scale)
from mmseg_pat.models.losses.logit_adjusted import logit_adjusted_loss
from mmseg_pat.models.losses.softmax_focal import softmax_focal_loss
from mmseg_pat.models.losses.weighted_cross_entropy_loss import (
    class_weights_from_counts, effective_number_weights,
    weighted_cross_entropy)

from model_configs import tiny_config

COUNTS = [5000, 800, 60, 3]  # class 3 is the rarest

# One config of each loss, all for 4 classes.
LOSSES = [
    dict(type='BLVLoss', class_counts=COUNTS),
    dict(type='WeightedCrossEntropyLoss', class_counts=COUNTS),
    dict(type='WeightedCrossEntropyLoss', class_weight=[0.5, 1, 2, 4]),
    dict(type='SoftmaxFocalLoss'),
    dict(type='SoftmaxFocalLoss', gamma=0.5, alpha=[0.25, 1, 1, 2]),
    dict(type='LogitAdjustedLoss', class_counts=COUNTS, tau=1.0),
    dict(
        type='WeightedCrossEntropyLoss',
        class_counts=COUNTS,
        weighting='effective_number',
        beta=0.99),
    dict(type='SoftmaxFocalLoss', class_counts=COUNTS,
         weighting='effective_number'),
    dict(type='RecallLoss'),
    dict(type='RecallLoss', momentum=0.9),
]
LOSS_IDS = [
    'blv', 'wce-counts', 'wce-weights', 'focal', 'focal-alpha', 'logit-adj',
    'wce-effective-number', 'focal-counts', 'recall', 'recall-momentum'
]


def _random_batch(n=2, c=4, h=5, w=6, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g) * scale
    label = torch.randint(0, c, (n, h, w), generator=g)
    label[0, :2] = 255
    return logits, label


def _build(cfg, train=False):
    return MODELS.build(cfg).train(train)


# --- the MMSeg contract, for every loss ------------------------------------


@pytest.mark.parametrize('cfg', LOSSES, ids=LOSS_IDS)
def test_contract_names_and_reductions(cfg):
    loss = _build(cfg)
    assert 'loss' in loss.loss_name
    logits, label = _random_batch()
    pixel = loss(logits, label, reduction_override='none')
    assert pixel.shape == label.shape and pixel.dtype == torch.float32
    assert torch.all(pixel[label == 255] == 0)
    total = loss(logits, label, reduction_override='sum')
    torch.testing.assert_close(total, pixel.sum())
    doubled = _build(dict(cfg, loss_weight=2.0))
    torch.testing.assert_close(
        doubled(logits, label), 2 * loss(logits, label))
    torch.testing.assert_close(
        loss(logits, label, avg_factor=7.0), total / 7.0)


@pytest.mark.parametrize('cfg', LOSSES, ids=LOSS_IDS)
def test_ignored_pixels_contribute_nothing(cfg):
    loss = _build(cfg)
    logits, label = _random_batch(seed=1)
    logits.requires_grad_(True)
    value = loss(logits, label)
    grad, = torch.autograd.grad(value, logits)
    assert torch.isfinite(grad).all()
    assert torch.all(grad.permute(0, 2, 3, 1)[label == 255] == 0)
    changed = logits.detach().clone()
    changed.permute(0, 2, 3, 1)[label == 255] = 1e4
    torch.testing.assert_close(loss(changed, label), value.detach())


@pytest.mark.parametrize('cfg', LOSSES, ids=LOSS_IDS)
def test_all_ignored_gives_zero_loss_and_gradient(cfg):
    loss = _build(cfg)
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    value = loss(logits, torch.full((2, 3, 3), 255))
    value.backward()
    assert value.item() == 0.0
    assert torch.all(logits.grad == 0)


@pytest.mark.parametrize('cfg', LOSSES, ids=LOSS_IDS)
@pytest.mark.parametrize('bad', [4, -1, 254])
def test_label_out_of_range_names_value(cfg, bad):
    logits, label = _random_batch()
    label[1, 0, 0] = bad
    with pytest.raises(ValueError, match=rf'\[{bad}\].*outside \[0, 4\)'):
        _build(cfg)(logits, label)


@pytest.mark.parametrize('cfg', LOSSES, ids=LOSS_IDS)
def test_float32_under_autocast(cfg):
    loss = _build(cfg)
    logits, label = _random_batch(seed=2)
    half = logits.to(torch.bfloat16)
    with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
        value = loss(half, label)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(half.float(), label))


@pytest.mark.parametrize('cfg', LOSSES, ids=LOSS_IDS)
def test_points_equal_the_same_pixels_as_a_map(cfg):
    """MMSeg's PointRend PointHead calls its loss with logits (N, C, P) and
    labels (N, P): the loss of the same pixels as an (N, C, P, 1) map."""
    loss = _build(cfg, train=True)
    logits, label = _random_batch(h=1, w=30, seed=17)
    points, point_labels = logits[:, :, 0], label[:, 0]
    point_labels[0, :4] = 255
    values = []
    for z, y in [(points, point_labels),
                 (points[..., None], point_labels[..., None])]:
        torch.manual_seed(0)  # BLV's variation, the same for both
        values.append(loss(z, y))
    torch.testing.assert_close(*values)
    pixel = loss(points, point_labels, reduction_override='none')
    assert pixel.shape == point_labels.shape
    assert torch.all(pixel[point_labels == 255] == 0)


@pytest.mark.parametrize('cfg', LOSSES, ids=LOSS_IDS)
def test_ohem_sampler_in_decode_head(cfg):
    """OHEM without a threshold ranks pixels by the loss map."""
    head = MODELS.build(
        dict(
            type='FCNHead',
            in_channels=4,
            channels=4,
            num_convs=1,
            num_classes=4,
            sampler=dict(type='OHEMPixelSampler', min_kept=10),
            loss_decode=cfg))
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    labels = torch.randint(0, 4, (2, 8, 8))
    labels[0, :3] = 255
    samples = []
    for label in labels:
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=label[None])
        samples.append(sample)
    value = head.loss_by_feat(logits, samples)[head.loss_decode.loss_name]
    value.backward()
    assert torch.isfinite(value)
    kept = logits.grad.abs().sum(1) > 0
    assert kept.sum() == 20  # min_kept per image
    assert not kept[labels == 255].any()


def test_module_functions_match_registered_classes():
    """The maths functions, called with tensors, give the classes' values."""
    logits, label = _random_batch(seed=16)
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    log_prior = (counts / counts.sum()).log()
    scale = -log_prior / (-log_prior).max()
    cases = [
        (LOSSES[2],
         weighted_cross_entropy(
             logits, label, class_weight=torch.tensor([0.5, 1, 2, 4]))),
        (LOSSES[4],
         softmax_focal_loss(
             logits, label, gamma=0.5, alpha=torch.tensor([0.25, 1, 1, 2]))),
        (LOSSES[5], logit_adjusted_loss(logits, label, log_prior)),
    ]
    for cfg, value in cases:
        torch.testing.assert_close(value, _build(cfg)(logits, label))
    blv = blv_loss(
        logits, label, scale, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(3)
    torch.testing.assert_close(blv, _build(LOSSES[0], train=True)(logits,
                                                                  label))


@pytest.mark.parametrize(
    'cfg', [LOSSES[0], LOSSES[1], LOSSES[5], LOSSES[7]],
    ids=['blv', 'wce', 'la', 'focal'])
def test_class_counts_must_match_classes(cfg):
    logits, label = _random_batch(c=3)
    with pytest.raises(
            ValueError,
            match='class_counts has 4 entries but the model has 3 classes; '
            'recompute with tools/analysis/class_statistics.py'):
        _build(cfg)(logits, label)


@pytest.mark.parametrize('cfg,match', [
    (dict(type='BLVLoss', class_counts=COUNTS, sigma=0), 'sigma'),
    (dict(type='SoftmaxFocalLoss', gamma=-1), 'gamma'),
    (dict(type='SoftmaxFocalLoss', alpha=[1, -1]), 'alpha'),
    (dict(type='WeightedCrossEntropyLoss', weighting='median'), 'weighting'),
    (dict(type='WeightedCrossEntropyLoss', class_weight=[1, -2]),
     r'class_weight must be finite and >= 0, got -2.0 at index 1'),
    (dict(
        type='WeightedCrossEntropyLoss',
        class_weight=[1, 2],
        class_counts=[3, 4]), 'not both'),
    (dict(type='LogitAdjustedLoss', class_counts=[3, 0.5]), 'whole'),
    (dict(type='SoftmaxFocalLoss', loss_name='focal'), "contain 'loss'"),
    (dict(type='SoftmaxFocalLoss', alpha=[1, 2], class_counts=[3, 4]),
     'give alpha or class_counts, not both'),
    (dict(type='SoftmaxFocalLoss', class_counts=[3, 4], weighting='median'),
     'weighting must be one of'),
    (dict(
        type='WeightedCrossEntropyLoss',
        class_counts=COUNTS,
        weighting='effective_number',
        beta=1.0), r'beta must be a number in \[0, 1\), got 1\.0'),
    (dict(
        type='SoftmaxFocalLoss',
        class_counts=COUNTS,
        weighting='effective_number',
        beta=-0.5), r'beta must be a number in \[0, 1\), got -0\.5'),
    (dict(
        type='WeightedCrossEntropyLoss',
        class_counts=COUNTS,
        weighting='effective_number',
        beta=float('nan')), r'got nan'),
    (dict(
        type='WeightedCrossEntropyLoss',
        class_counts=COUNTS,
        weighting='effective_number',
        beta=True), r'got True'),
    (dict(type='WeightedCrossEntropyLoss', class_counts=COUNTS, beta=0.9),
     "beta is the parameter of weighting='effective_number'; got "
     "beta=0.9 with weighting='log'"),
    (dict(
        type='SoftmaxFocalLoss',
        class_counts=COUNTS,
        weighting='inverse',
        beta=0.999), "got beta=0.999 with weighting='inverse'"),
    (dict(type='RecallLoss', momentum=1.0),
     r'momentum must be a number in \[0, 1\), got 1\.0'),
    (dict(type='RecallLoss', momentum=-0.1), r'got -0\.1'),
    (dict(type='RecallLoss', momentum='0.9'), r"got '0\.9'"),
    (dict(type='RecallLoss', loss_name='recall'), "contain 'loss'"),
])
def test_bad_options_raise(cfg, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(cfg)


# --- class-weighted cross-entropy -------------------------------------------


# How MMSeg's class-weighted CE fails at an ignored pixel (no avg_factor,
# avg_non_ignore=True). OneDL difference: MMSeg 1.2.2 indexes
# class_weight[255]; the fork (1.4.2) drops the ignored pixels there, then
# masks the shorter weights with the label's shape.
MMSEG_CE_CRASH = {'openmmlab': '255', 'onedl': 'too many indices'}


def test_mmseg_class_weighted_ce_crashes_on_ignored_pixels():
    """MMSeg's CrossEntropyLoss with class_weight fails on ignored pixels
    when no avg_factor is given (both stacks, MMSEG_CE_CRASH); ours handles
    them and matches PyTorch."""
    logits, label = _random_batch()
    weights = [0.5, 1.0, 2.0, 4.0]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # MMSeg's avg_non_ignore notice
        theirs = CrossEntropyLoss(class_weight=weights, avg_non_ignore=True)
    with pytest.raises(IndexError, match=MMSEG_CE_CRASH[STACK]):
        theirs(logits, label, ignore_index=255)
    ours = MODELS.build(
        dict(type='WeightedCrossEntropyLoss', class_weight=weights))
    expected = F.cross_entropy(
        logits, label, weight=torch.tensor(weights), ignore_index=255)
    torch.testing.assert_close(ours(logits, label), expected)


@pytest.mark.parametrize('weighting', ['inverse', 'sqrt_inverse', 'log'])
def test_weighted_ce_from_counts_equals_pytorch(weighting):
    logits, label = _random_batch(seed=3)
    loss = MODELS.build(
        dict(
            type='WeightedCrossEntropyLoss',
            class_counts=COUNTS,
            weighting=weighting))
    weights = class_weights_from_counts(
        COUNTS, weighting)
    expected = F.cross_entropy(
        logits,
        label,
        weight=torch.tensor(weights, dtype=torch.float32),
        ignore_index=255)
    torch.testing.assert_close(loss(logits, label), expected)


@pytest.mark.parametrize('weighting,raw', [
    ('inverse', lambda f: 1 / f),
    ('sqrt_inverse', lambda f: f**-0.5),
    ('log', lambda f: 1 / math.log(1.02 + f)),
])
def test_class_weights_by_hand(weighting, raw):
    """Weights are the method's formula, scaled so that the average
    training pixel has weight 1."""
    counts = [600, 300, 100, 0]  # the empty class counts as one pixel
    clamped = [600, 300, 100, 1]
    freq = [n / sum(clamped) for n in clamped]
    unscaled = [raw(f) for f in freq]
    scale = sum(f * w for f, w in zip(freq, unscaled))
    expected = [w / scale for w in unscaled]
    got = class_weights_from_counts(
        counts, weighting)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.dot(got, freq) == pytest.approx(1.0)


def test_inverse_weights_are_sklearn_balanced():
    counts = np.array([600, 300, 100])
    got = class_weights_from_counts(
        counts, 'inverse')
    np.testing.assert_allclose(got, counts.sum() / (3 * counts))


# Effective-number weights (Cui et al., CVPR 2019) worked out in 60-digit
# decimal arithmetic from (1 - beta) / (1 - beta^n), an empty class counted
# as one pixel: the unnormalised weights, ours (the average training pixel
# has weight 1) and Cui et al.'s scale (sum to C).
EFFECTIVE_NUMBER_CASES = [
    # a huge count (beta^n underflows: weight 1 - beta) and an empty class
    ([10**12, 5000, 60, 0], 0.999,
     [0.001, 0.0010067665909754, 0.0171633341449927, 1.0],
     [0.999999997997367, 1.00676658895921, 17.1633341106209,
      999.999997997366],
     [0.0039247619186547, 0.00395131917723406, 0.0673620002494134,
      3.9247619186547]),
    ([5000, 800, 60, 3], 0.99,
     [0.01, 0.010003223262236, 0.0220826911380448, 0.336689000370358],
     [0.971699124943062, 0.972012329052478, 2.14577316552261,
      32.7160407037831],
     [0.105603614284281, 0.105637653098472, 0.2332011997301,
      3.55555753288715]),
    ([600, 300, 100, 0], 0.9999,
     [0.00171708332694411, 0.0033834166726391, 0.0100495833290276, 1.0],
     [0.424370713947408, 0.836198760082745, 2.48371688507592,
      247.14625509914],
     [0.00676583041322877, 0.0133316904690392, 0.039598414043668,
      3.94030406507406]),
]


@pytest.mark.parametrize('counts,beta,raw,expected,cui',
                         EFFECTIVE_NUMBER_CASES)
def test_effective_number_weights_by_hand(counts, beta, raw, expected, cui):
    got = class_weights_from_counts(counts, 'effective_number', beta)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(
        effective_number_weights(np.maximum(counts, 1).astype(float), beta),
        raw, rtol=1e-12)
    pixels = np.maximum(counts, 1)
    assert np.dot(got, pixels / pixels.sum()) == pytest.approx(1.0)
    # the same ratios as the paper's weights, which sum to C
    np.testing.assert_allclose(got / got.sum() * len(got), cui, rtol=1e-12)
    assert np.all(np.isfinite(got))


def test_effective_number_limits():
    """beta = 0 weights every class alike; beta towards 1 gives the inverse
    frequency; beta defaults to 0.999."""
    counts = [600, 300, 100, 0]
    np.testing.assert_allclose(
        class_weights_from_counts(counts, 'effective_number', 0.0),
        [1.0, 1.0, 1.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(
        class_weights_from_counts(counts, 'effective_number', 1 - 1e-12),
        class_weights_from_counts(counts, 'inverse'), rtol=1e-6)
    np.testing.assert_array_equal(
        class_weights_from_counts(counts, 'effective_number'),
        class_weights_from_counts(counts, 'effective_number', 0.999))
    loss = MODELS.build(
        dict(
            type='WeightedCrossEntropyLoss',
            class_counts=counts,
            weighting='effective_number'))
    assert loss.beta == 0.999


def test_weighted_ce_effective_number_equals_pytorch():
    logits, label = _random_batch(seed=18)
    counts, beta, _, expected, _ = EFFECTIVE_NUMBER_CASES[1]
    loss = MODELS.build(
        dict(
            type='WeightedCrossEntropyLoss',
            class_counts=counts,
            weighting='effective_number',
            beta=beta))
    reference = F.cross_entropy(
        logits, label, weight=torch.tensor(expected), ignore_index=255)
    torch.testing.assert_close(loss(logits, label), reference)


@pytest.mark.parametrize('weighting,beta', [('log', None),
                                            ('inverse', None),
                                            ('effective_number', 0.99)])
def test_focal_with_counts_is_focal_with_their_weights(weighting, beta):
    """class_counts give alpha by the weighting of the class-weighted CE;
    'train_set' waits for the counts."""
    logits, label = _random_batch(seed=19)
    counts = EFFECTIVE_NUMBER_CASES[1][0]
    options = dict(weighting=weighting, beta=beta)
    if weighting == 'effective_number':
        alpha = EFFECTIVE_NUMBER_CASES[1][3]
    else:
        alpha = class_weights_from_counts(counts, weighting).tolist()
    expected = MODELS.build(
        dict(type='SoftmaxFocalLoss', alpha=alpha))(logits, label)
    loss = MODELS.build(
        dict(type='SoftmaxFocalLoss', class_counts=counts, **options))
    torch.testing.assert_close(loss(logits, label), expected)
    pending = MODELS.build(
        dict(type='SoftmaxFocalLoss', class_counts='train_set', **options))
    assert pending.class_counts_pending
    with pytest.raises(ValueError, match='ClassCountsHook'):
        pending(logits, label)
    pending.set_class_counts(counts)
    assert not pending.class_counts_pending
    torch.testing.assert_close(pending(logits, label), expected)


def test_focal_without_counts_is_unchanged():
    logits, label = _random_batch(seed=20)
    loss = MODELS.build(dict(type='SoftmaxFocalLoss', gamma=0.5))
    assert not loss.uses_counts and not loss.class_counts_pending
    torch.testing.assert_close(
        loss(logits, label), softmax_focal_loss(logits, label, gamma=0.5))


def test_class_weight_from_json_file(tmp_path):
    path = str(tmp_path / 'weights.json')
    with open(path, 'w') as f:
        json.dump([1.0, 3.0, 0.5, 2.0], f)
    logits, label = _random_batch(seed=4)
    loss = MODELS.build(
        dict(type='WeightedCrossEntropyLoss', class_weight=path))
    expected = F.cross_entropy(
        logits,
        label,
        weight=torch.tensor([1.0, 3.0, 0.5, 2.0]),
        ignore_index=255)
    torch.testing.assert_close(loss(logits, label), expected)


def test_weighted_ce_without_weights_is_ce():
    logits, label = _random_batch(seed=5)
    loss = MODELS.build(dict(type='WeightedCrossEntropyLoss'))
    torch.testing.assert_close(
        loss(logits, label), F.cross_entropy(logits, label,
                                             ignore_index=255))


def test_pixel_weights_make_a_weighted_mean():
    """Per-pixel weights w (e.g. OHEM's) give sum(c_y w l) / sum(c_y w)."""
    logits, label = _random_batch(seed=6)
    weight = torch.rand(label.shape, generator=torch.Generator().manual_seed(
        0))
    class_weight = torch.tensor([0.5, 1.0, 2.0, 4.0])
    loss = MODELS.build(
        dict(type='WeightedCrossEntropyLoss', class_weight=[0.5, 1, 2, 4]))
    ce = F.cross_entropy(logits, label, ignore_index=255, reduction='none')
    valid = label != 255
    w = torch.where(valid, class_weight[label.clamp(max=3)] * weight, 0.0)
    expected = (w * ce).sum() / w.sum()
    torch.testing.assert_close(loss(logits, label, weight=weight), expected)


# --- softmax focal loss -----------------------------------------------------


def _focal_by_hand(p_true, gamma, alpha=1.0):
    return -alpha * (1 - p_true)**gamma * math.log(p_true)


# Two classes, logits (0, ln 3): p = (1/4, 3/4).
@pytest.mark.parametrize('label,gamma,alpha,expected', [
    (1, 2.0, None, _focal_by_hand(0.75, 2.0)),
    (0, 2.0, None, _focal_by_hand(0.25, 2.0)),
    (0, 0.0, None, math.log(4)),
    (1, 1.0, [1.0, 0.25], _focal_by_hand(0.75, 1.0, 0.25)),
    (0, 3.0, [2.0, 1.0], _focal_by_hand(0.25, 3.0, 2.0)),
])
def test_focal_hand_computed(label, gamma, alpha, expected):
    logits = torch.tensor([0.0, math.log(3)]).view(1, 2, 1, 1)
    loss = MODELS.build(
        dict(type='SoftmaxFocalLoss', gamma=gamma, alpha=alpha))
    value = loss(logits, torch.tensor([[[label]]]))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_focal_gamma_zero_is_cross_entropy():
    logits, label = _random_batch(seed=7)
    logits.requires_grad_(True)
    loss = MODELS.build(dict(type='SoftmaxFocalLoss', gamma=0.0))
    value = loss(logits, label)
    expected = F.cross_entropy(logits, label, ignore_index=255)
    torch.testing.assert_close(value, expected)
    g_ours, = torch.autograd.grad(value, logits)
    g_ce, = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(g_ours, g_ce)


@pytest.mark.parametrize('gamma', [0.5, 2.0])
def test_focal_matches_naive_loop(gamma):
    """Mean over valid pixels of -alpha_y (1 - p_y)^gamma log p_y; alpha
    does not enter the divisor."""
    logits, label = _random_batch(seed=8)
    alpha = [0.25, 1.0, 0.5, 2.0]
    loss = MODELS.build(
        dict(type='SoftmaxFocalLoss', gamma=gamma, alpha=alpha))
    z = logits.double().numpy()
    y = label.numpy()
    terms = []
    for b, i, j in np.ndindex(*y.shape):
        k = y[b, i, j]
        if k == 255:
            continue
        e = np.exp(z[b, :, i, j] - z[b, :, i, j].max())
        terms.append(_focal_by_hand(e[k] / e.sum(), gamma, alpha[k]))
    assert loss(logits, label).item() == pytest.approx(
        np.mean(terms), rel=1e-5)


def test_focal_gradient_finite_when_saturated():
    logits = torch.tensor([[[[60.0]], [[-60.0]]]], requires_grad=True)
    loss = MODELS.build(dict(type='SoftmaxFocalLoss', gamma=0.5))
    loss(logits, torch.zeros(1, 1, 1, dtype=torch.long)).backward()
    assert torch.isfinite(logits.grad).all()


# --- logit adjustment -------------------------------------------------------


@pytest.mark.parametrize('tau', [0.0, 0.5, 1.0, 2.0])
def test_logit_adjusted_equals_ce_of_shifted_logits(tau):
    logits, label = _random_batch(seed=9)
    loss = MODELS.build(
        dict(type='LogitAdjustedLoss', class_counts=COUNTS, tau=tau))
    prior = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    shifted = logits.double() + tau * prior.log().view(1, -1, 1, 1)
    expected = F.cross_entropy(shifted, label, ignore_index=255)
    assert loss(logits, label).item() == pytest.approx(
        expected.item(), rel=1e-5)


def test_logit_adjusted_empty_class_counts_as_one_pixel():
    logits, label = _random_batch(seed=10)
    with_zero = MODELS.build(
        dict(type='LogitAdjustedLoss', class_counts=[50, 30, 19, 0]))
    with_one = MODELS.build(
        dict(type='LogitAdjustedLoss', class_counts=[50, 30, 19, 1]))
    value = with_zero(logits, label)
    assert torch.isfinite(value)
    torch.testing.assert_close(value, with_one(logits, label))


def test_logit_adjusted_from_json(tmp_path):
    path = str(tmp_path / 'counts.json')
    save_class_counts(path, COUNTS, ['a', 'b', 'c', 'd'])
    logits, label = _random_batch(seed=11)
    from_file = MODELS.build(dict(type='LogitAdjustedLoss', class_counts=path))
    from_list = MODELS.build(
        dict(type='LogitAdjustedLoss', class_counts=COUNTS))
    torch.testing.assert_close(
        from_file(logits, label), from_list(logits, label))


# --- BLV --------------------------------------------------------------------


def _blv_scale_by_hand(counts):
    f = [math.log(sum(counts)) - math.log(n) for n in counts]
    return [v / max(f) for v in f]


def test_blv_eval_mode_is_cross_entropy():
    logits, label = _random_batch(seed=12)
    loss = _build(dict(type='BLVLoss', class_counts=COUNTS), train=False)
    torch.testing.assert_close(
        loss(logits, label), F.cross_entropy(logits, label,
                                             ignore_index=255))


@pytest.mark.parametrize('sigma', [4.0, 0.3])
def test_blv_train_mode_perturbation_seeded(sigma):
    """With the same seed, the loss is the CE of z + |clamp(sigma * n)|
    * f_c / max f, n ~ N(0, 1) drawn as torch.randn(N, C, H, W)."""
    logits, label = _random_batch(seed=13)
    loss = _build(
        dict(type='BLVLoss', class_counts=COUNTS, sigma=sigma), train=True)
    torch.manual_seed(123)
    pixel = loss(logits, label, reduction_override='none')

    torch.manual_seed(123)
    noise = torch.randn(logits.shape)
    scale = torch.tensor(_blv_scale_by_hand(COUNTS)).view(1, -1, 1, 1)
    shifted = logits + (noise * sigma).clamp(-1, 1).abs() * scale
    expected = F.cross_entropy(
        shifted, label, ignore_index=255, reduction='none')
    torch.testing.assert_close(pixel, expected)


def test_blv_perturbation_with_generator():
    scale = torch.tensor(_blv_scale_by_hand(COUNTS), dtype=torch.float32)
    shape = torch.Size((2, 4, 3, 5))
    got = blv_perturbation(
        shape, scale, sigma=4.0, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    expected = torch.clamp(4.0 * noise, -1, 1).abs() * scale.view(1, -1, 1, 1)
    torch.testing.assert_close(got, expected)


def test_blv_perturbation_largest_for_rarest_class():
    scale = torch.tensor(
        blv_variation_scale(COUNTS), dtype=torch.float32)
    np.testing.assert_allclose(
        scale.numpy(), _blv_scale_by_hand(COUNTS), rtol=1e-6)
    delta = blv_perturbation(
        torch.Size((4, 4, 32, 32)), scale,
        generator=torch.Generator().manual_seed(0))
    per_class = delta.mean(dim=(0, 2, 3))
    assert per_class.argmax().item() == 3  # the rarest class
    assert torch.all(per_class[:-1] < per_class[1:])  # rarer, larger
    assert delta.max() <= 1.0 and delta.min() >= 0.0


def test_blv_empty_class_gets_largest_variation():
    scale = blv_variation_scale([900, 90, 0, 9])
    assert scale[2] == 1.0 and np.all(scale[[0, 1, 3]] < 1.0)
    np.testing.assert_allclose(
        scale, _blv_scale_by_hand([900, 90, 1, 9]), rtol=1e-12)


@pytest.mark.parametrize('counts,expected', [
    ([7, 7, 7, 7], [1.0, 1.0, 1.0, 1.0]),  # same variation for all
    ([100, 10], [math.log(110 / 100) / math.log(11), 1.0]),
    ([42], [0.0]),  # a single class: f = 0, no variation
])
def test_blv_variation_scale_by_hand(counts, expected):
    np.testing.assert_allclose(
        blv_variation_scale(counts), expected, rtol=1e-12)


def test_blv_gradient_flows():
    """The perturbation is a constant: the gradient is CE's on z + delta."""
    logits, label = _random_batch(seed=15)
    logits.requires_grad_(True)
    loss = _build(dict(type='BLVLoss', class_counts=COUNTS), train=True)
    torch.manual_seed(5)
    grad, = torch.autograd.grad(loss(logits, label), logits)

    torch.manual_seed(5)
    delta = blv_perturbation(logits.shape, loss.variation_scale)
    shifted = (logits.detach() + delta).requires_grad_(True)
    expected, = torch.autograd.grad(
        F.cross_entropy(shifted, label, ignore_index=255), shifted)
    assert grad.abs().sum() > 0
    torch.testing.assert_close(grad, expected)


# --- inside MMEngine's runner -----------------------------------------------


def test_tiny_segformer_trains_with_blv_and_long_tail_metric(
        tmp_path, shapes_root):
    """BLV with counts from the dataset's JSON in a real decode head; the
    validation at the end reports head / body / tail mIoU."""
    cfg = tiny_config('segformer', str(tmp_path), shapes_root, max_iters=2)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    counts_file = str(tmp_path / 'counts.json')
    save_class_counts(counts_file, class_pixel_counts(dataset),
                      dataset.metainfo['classes'])
    cfg.model.decode_head.loss_decode = dict(
        type='BLVLoss', class_counts=counts_file)
    cfg.val_evaluator = dict(
        type='LongTailIoUMetric', class_counts=counts_file)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    value = hub.get_scalar('train/decode.loss_blv').current()
    assert math.isfinite(value) and value > 0
    for key in ('mIoU', 'head_mIoU', 'tail_mIoU', 'IoU.background'):
        assert hub.get_scalar(f'val/{key}') is not None
    assert osp.isfile(osp.join(str(tmp_path), 'iter_2.pth'))


def test_effective_number_says_when_pixel_counts_saturate_it():
    """With pixel counts in the thousands, beta=0.999 gives every class the
    same weight (beta^n ~ 0): the loss is CE, and the user is told so with
    a beta that would separate the classes; small counts do not warn."""
    big = [4_000_000, 200_000, 9_000]
    with pytest.warns(UserWarning, match=r'plain cross-entropy.*'
                      r'beta=0\.99988889'):
        loss = MODELS.build(
            dict(type='WeightedCrossEntropyLoss', class_counts=big,
                 weighting='effective_number'))
    torch.testing.assert_close(loss.class_weight, torch.ones(3), rtol=1e-3,
                               atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        MODELS.build(
            dict(type='WeightedCrossEntropyLoss', class_counts=[5000, 50, 5],
                 weighting='effective_number'))
