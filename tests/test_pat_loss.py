"""PATLoss against independent references: the authors' expression, closed
form gradients worked out by hand, and naive per-pixel loops in float64."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from mmseg_pat.models.losses import (ConfidenceExchange, pat_loss, pat_weights,
                                     pixel_loss)
from mmseg_pat.visualization import memory_panel


def _random_batch(n=2, c=5, h=6, w=7, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g) * scale
    label = torch.randint(0, c, (n, h, w), generator=g)
    return logits, label


def authors_loss(logits, label):
    """github.com/KhoiDOO/ibla, loss 'ina': mean over N*C*H*W of
    -log_softmax(z) * onehot / (2 * exp(C * (p - 1)))."""
    c = logits.shape[1]
    onehot = F.one_hot(label, c).permute(0, 3, 1, 2).float()
    p = logits.softmax(1)
    return torch.mean(-F.log_softmax(logits, 1) * onehot /
                      (2 * torch.exp(c * (p - 1))))


def naive_pat(logits, label, q, kappa, homogenize, normalize, ignore=255):
    """Float64 loop over pixels: sum_i w_i * l_i / Z, as the spec writes."""
    z = logits.double().numpy()
    y = label.numpy()
    n, c, h, w = z.shape
    counts = np.bincount(y[y != ignore].ravel(), minlength=c)
    # what a pixel's beta is divided by, from its class's pixel count
    divisor = {
        'class': float,
        'sqrt': math.sqrt,
        'none': lambda count: 1.0
    }[homogenize]
    num, wsum = 0.0, 0.0
    for b in range(n):
        for i in range(h):
            for j in range(w):
                k = y[b, i, j]
                if k == ignore:
                    continue
                zz = z[b, :, i, j]
                logp = zz[k] - zz.max() - math.log(np.exp(zz - zz.max()).sum())
                beta = 0.5 * math.exp(kappa * (1 - q[b, i, j]))
                wi = beta / divisor(counts[k])
                num += wi * -logp
                wsum += wi
    if normalize == 'weight':
        return num / wsum
    # Z of normalize='none': the sum of 1 / divisor over the valid pixels
    return num / sum(count / divisor(count) for count in counts if count)


def test_equals_authors_expression_times_c():
    logits, label = _random_batch(c=5)
    logits.requires_grad_(True)
    ours = pat_loss(
        logits,
        label,
        confidence='current',
        detach_weight=False,
        homogenize='none',
        normalize='none')
    theirs = authors_loss(logits, label) * logits.shape[1]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    g_ours, = torch.autograd.grad(ours, logits)
    logits2 = logits.detach().clone().requires_grad_(True)
    g_theirs, = torch.autograd.grad(
        authors_loss(logits2, label) * logits.shape[1], logits2)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize('curve,kappa', [('ina', 5.0), ('inap', 1.0)])
@pytest.mark.parametrize('homogenize', ['class', 'none'])
@pytest.mark.parametrize('normalize', ['weight', 'none'])
def test_value_matches_naive_loop(curve, kappa, homogenize, normalize):
    logits, label = _random_batch(c=5, seed=3)
    label[0, :2] = 255
    q = torch.rand(label.shape, generator=torch.Generator().manual_seed(4))
    ours = pat_loss(
        logits,
        label,
        prev_confidence=q,
        curve=curve,
        confidence='previous',
        homogenize=homogenize,
        normalize=normalize)
    ref = naive_pat(logits, label, q.double().numpy(), kappa, homogenize,
                    normalize)
    assert ours.item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize('homogenize', ['class', 'sqrt', 'none'])
def test_gradient_detached_weight_closed_form(homogenize):
    """d loss / d z_i = (w_i / Z) * (softmax(z_i) - onehot(y_i))."""
    logits, label = _random_batch(c=4, seed=5)
    label[1, 3:] = 255
    logits.requires_grad_(True)
    loss = pat_loss(
        logits, label, confidence='current', curve='ina',
        homogenize=homogenize)
    grad, = torch.autograd.grad(loss, logits)

    z = logits.detach().double()
    p = z.softmax(1)
    valid = label != 255
    y = torch.where(valid, label, 0)
    onehot = F.one_hot(y, 4).permute(0, 3, 1, 2).double()
    p_true = p.gather(1, y.unsqueeze(1)).squeeze(1)
    beta = 0.5 * torch.exp(4 * (1 - p_true))
    counts = torch.bincount(y[valid], minlength=4).double()
    if homogenize == 'none':
        counts = torch.ones_like(counts)
    elif homogenize == 'sqrt':
        counts = counts.sqrt()
    w = torch.where(valid, beta / counts[y], 0.0)
    expected = (w / w.sum()).unsqueeze(1) * (p - onehot)
    torch.testing.assert_close(grad.double(), expected, rtol=1e-4, atol=1e-8)


def test_gradient_not_detached_closed_form():
    """The authors' gradient: CE's times beta * (1 - kappa * p * log p)."""
    logits, label = _random_batch(c=3, seed=6)
    logits.requires_grad_(True)
    loss = pat_loss(
        logits,
        label,
        confidence='current',
        detach_weight=False,
        homogenize='none',
        normalize='none')
    grad, = torch.autograd.grad(loss, logits)

    z = logits.detach().double()
    p = z.softmax(1)
    onehot = F.one_hot(label, 3).permute(0, 3, 1, 2).double()
    pt = p.gather(1, label.unsqueeze(1)).squeeze(1)
    beta = 0.5 * torch.exp(3 * (1 - pt))
    factor = beta * (1 - 3 * pt * pt.log()) / label.numel()
    expected = factor.unsqueeze(1) * (p - onehot)
    torch.testing.assert_close(grad.double(), expected, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize('q,expected', [(1.0, 0.5), (0.0, 0.5 * math.e**19),
                                        (0.5, 0.5 * math.e**9.5)])
def test_ina_weight_curve(q, expected):
    assert pat_weights(torch.tensor(q), 19).item() == pytest.approx(
        expected, rel=1e-5)


def test_max_log_weight_caps_exponent():
    w = pat_weights(torch.tensor([0.0, 0.9]), 19, max_log_weight=5.0)
    torch.testing.assert_close(
        w, torch.tensor([0.5 * math.e**5, 0.5 * math.e**1.9]))


@pytest.mark.parametrize('normalize', ['weight', 'none'])
def test_capped_loss_equals_naive_loop(normalize):
    """max_log_weight below kappa: beta = 1/2 exp(min(kappa (1 - q), cap)),
    in the loss as in a float64 loop (the cap shifts every weight)."""
    logits, label = _random_batch(c=19, seed=21)
    label[:, 0] = 255  # ignored pixels get weight 0
    cap = 3.0
    q = logits.softmax(1).gather(1, label.clamp(max=18).unsqueeze(1))[:, 0]
    # the naive loop's beta with kappa (1 - q) capped at `cap`
    capped_q = torch.clamp(q.double(), min=1 - cap / 19).numpy()
    ours = pat_loss(
        logits, label, confidence='current', max_log_weight=cap,
        normalize=normalize)
    ref = naive_pat(logits, label, capped_q, 19, 'none', normalize)
    assert abs(ours.item() - ref) < 1e-4 * max(1.0, abs(ref))


def test_class_homogenization_equal_total_weight():
    """10 pixels of class 0 and 10,000 of class 1 with the same confidence
    and the same per-pixel loss get the same total share."""
    label = torch.ones(1, 101, 100, dtype=torch.long)
    label[0, 0, :10] = 0
    label[0, 0, 10:] = 255  # the rest of the first row is ignored
    logits = torch.zeros(1, 2, 101, 100)  # every pixel's CE is log 2
    prev = torch.full(label.shape, 0.3)
    pixel = pat_loss(
        logits, label, prev_confidence=prev, homogenize='class',
        reduction='none')
    share0 = pixel[label == 0].sum()
    share1 = pixel[label == 1].sum()
    assert (label == 1).sum() == 10000
    torch.testing.assert_close(share0, share1)
    assert share0.item() == pytest.approx(math.log(2) / 2, rel=1e-5)
    assert torch.all(pixel[label == 255] == 0)


@pytest.mark.parametrize('homogenize,ratio', [('sqrt', 1000**0.5),
                                              ('none', 1000.0)])
def test_class_shares_without_full_homogenization(homogenize, ratio):
    """The same 10 vs 10,000 pixels: the large class's share is sqrt(1000)
    times the small one's with 'sqrt', 1000 times with 'none'."""
    label = torch.ones(1, 101, 100, dtype=torch.long)
    label[0, 0, :10] = 0
    label[0, 0, 10:] = 255
    logits = torch.zeros(1, 2, 101, 100)
    prev = torch.full(label.shape, 0.3)
    pixel = pat_loss(
        logits, label, prev_confidence=prev, homogenize=homogenize,
        reduction='none')
    share0 = pixel[label == 0].sum().item()
    share1 = pixel[label == 1].sum().item()
    assert share1 / share0 == pytest.approx(ratio, rel=1e-4)
    assert share0 + share1 == pytest.approx(math.log(2), rel=1e-5)


def test_ignored_pixels_contribute_nothing():
    logits, label = _random_batch(c=4, seed=7)
    label[:, :3] = 255
    logits.requires_grad_(True)
    loss = pat_loss(logits, label)
    grad, = torch.autograd.grad(loss, logits)
    assert torch.all(grad.permute(0, 2, 3, 1)[label == 255] == 0)
    changed = logits.detach().clone()
    changed.permute(0, 2, 3, 1)[label == 255] = 1e4
    assert pat_loss(changed, label).item() == pytest.approx(loss.item())


@pytest.mark.parametrize('normalize', ['weight', 'none'])
def test_all_ignored_gives_zero_loss_and_gradient(normalize):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    label = torch.full((2, 4, 4), 255)
    loss = pat_loss(logits, label, normalize=normalize)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(logits.grad == 0)


@pytest.mark.parametrize('bad', [7, -1])
def test_label_out_of_range_names_value(bad):
    logits, label = _random_batch(c=5)
    label[0, 0, 0] = bad
    with pytest.raises(ValueError, match=rf'\[{bad}\].*outside \[0, 5\)'):
        pat_loss(logits, label)


def test_many_classes_large_logits_stay_finite():
    logits, label = _random_batch(n=1, c=150, h=8, w=8, seed=8)
    logits = (logits * 100).requires_grad_(True)
    loss = pat_loss(logits, label)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    # a confident-wrong pixel gives the largest weight: e^150 would overflow
    # float32 without the log domain
    ref = naive_pat(logits.detach(), label,
                    torch.exp(F.log_softmax(logits.detach().double(), 1)
                              .gather(1, label.unsqueeze(1)).squeeze(1))
                    .numpy(), 150.0, 'none', 'weight')
    assert loss.item() == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize('c', [19, 87, 88, 150])
def test_confident_pixels_keep_their_weight_with_many_classes(c):
    """Every pixel nearly certain: each weight is about exp(-kappa) of the
    largest the curve allows. It must stay a normal float32 (not 0, which
    would make the loss 0/0) whether the loss shifts the log-weights by
    that largest value (C <= 87) or by the batch's largest (C >= 88)."""
    logits, label = _random_batch(n=1, c=c, h=4, w=5, seed=27)
    logits.scatter_(1, label[:, None], 10.0)  # the true class far ahead
    loss = pat_loss(logits, label)
    p = F.softmax(logits.double(), 1).gather(1, label[:, None])[:, 0]
    assert p.min() > 0.9
    ref = naive_pat(logits, label, p.numpy(), float(c), 'none', 'weight')
    assert loss.item() == pytest.approx(ref, rel=1e-4)


def test_bf16_autocast_gives_fp32_result():
    logits, label = _random_batch(c=19, seed=9)
    ref = pat_loss(logits, label)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        amp = pat_loss(logits, label)
    assert amp.dtype == torch.float32
    assert amp.item() == pytest.approx(ref.item(), rel=1e-6)
    half = logits.bfloat16()
    torch.testing.assert_close(
        pat_loss(half, label), pat_loss(half.float(), label))


def test_temperature_divides_logits():
    logits, label = _random_batch(seed=10)
    a = pat_loss(logits, label, tau=2.0)
    b = pat_loss(logits / 2, label)
    torch.testing.assert_close(a, b)


def test_previous_confidence_used_and_unknown_falls_back():
    logits, label = _random_batch(c=3, seed=11)
    current = logits.softmax(1).gather(1, label.unsqueeze(1)).squeeze(1)
    unknown = torch.full(label.shape, -1.0)
    fallback = pat_loss(logits, label, prev_confidence=unknown)
    same = pat_loss(logits, label, prev_confidence=current)
    torch.testing.assert_close(fallback, same)
    other = pat_loss(
        logits, label, prev_confidence=torch.zeros(label.shape))
    assert not torch.isclose(other, same)


def test_weight_map_multiplies_weights():
    logits, label = _random_batch(c=3, seed=12)
    keep = torch.zeros(label.shape)
    keep[0] = 1.0
    masked = pat_loss(logits, label, weight=keep, homogenize='none')
    only_first = pat_loss(logits[:1], label[:1], homogenize='none')
    torch.testing.assert_close(masked, only_first)


def test_module_through_registry():
    loss = MODELS.build(dict(type='PATLoss', loss_weight=2.0, curve='inap'))
    assert loss.loss_name == 'loss_pat'
    logits, label = _random_batch(c=3, seed=13)
    # the decode head's loss leaves its current confidences in the exchange
    loss.exchange = ConfidenceExchange(previous=[], writer=loss)
    value = loss(logits, label, ignore_index=255)
    # the module's default follows the study: no class homogenization
    ref = pat_loss(logits, label, curve='inap', homogenize='none')
    current = logits.softmax(1).gather(1, label.unsqueeze(1)).squeeze(1)
    current[label == 255] = -1.0
    torch.testing.assert_close(value, 2 * ref)
    torch.testing.assert_close(loss.exchange.current, current)
    per_pixel = loss(logits, label, reduction_override='none')
    assert per_pixel.shape == label.shape
    torch.testing.assert_close(per_pixel.sum(), value)


@pytest.mark.parametrize('kwargs,match', [
    (dict(curve='focal'), 'curve'),
    (dict(homogenize='pixel'), 'homogenize'),
    (dict(homogenize='class_area'), 'homogenize'),
    (dict(normalize='sum'), 'normalize'),
    (dict(confidence='next'), 'confidence'),
    (dict(tau=0), 'tau'),
    (dict(loss_name='pat'), 'loss_name'),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(dict(type='PATLoss', **kwargs))


def _reference(logits, label, prev, kappa, confidence, detach, homogenize,
               normalize):
    """Float64 value and gradient of PAT for any option combination, in
    closed form, pixel by pixel.

    q is the stored confidence where there is one (``prev >= 0``), the
    current p elsewhere (and always with ``confidence='current'``). The
    gradient of ``w_i l_i / Z`` (Z a constant: detached, or a count) is
    ``w_i / Z * (p - onehot)``, times ``(1 - kappa p log p)`` where the
    weight follows the current p with its gradient (``detach=False`` and
    ``confidence='current'``).
    """
    z = logits.double()
    c = z.shape[1]
    p = z.softmax(1)
    valid = label != 255
    y = torch.where(valid, label, 0)
    onehot = F.one_hot(y, c).permute(0, 3, 1, 2).double()
    p_true = p.gather(1, y.unsqueeze(1)).squeeze(1)
    if confidence == 'current':
        q = p_true
    else:
        q = torch.where(prev >= 0, prev.double(), p_true)
    counts = torch.bincount(y[valid], minlength=c).double()
    divisor = dict(none=torch.ones_like(counts), sqrt=counts.sqrt(),
                   **{'class': counts})[homogenize]
    w = torch.where(valid, 0.5 * torch.exp(kappa * (1 - q)) / divisor[y],
                    0.0)
    loss_i = -p_true.log()
    if normalize == 'weight':
        big_z = w.sum()
    else:
        present = counts > 0
        big_z = (counts[present] / divisor[present]).sum()
    value = (w * loss_i).sum() / big_z
    factor = w / big_z
    if confidence == 'current' and not detach:
        factor = factor * (1 - kappa * p_true * p_true.log())
    grad = factor.unsqueeze(1) * (p - onehot)
    return value, grad


@pytest.mark.parametrize('curve,kappa', [('ina', 4.0), ('inap', 1.0)])
@pytest.mark.parametrize('confidence', ['previous', 'current'])
@pytest.mark.parametrize('detach', [True, False])
@pytest.mark.parametrize('homogenize', ['class', 'sqrt', 'none'])
@pytest.mark.parametrize('normalize', ['weight', 'none'])
def test_every_option_combination_value_and_gradient(
        curve, kappa, confidence, detach, homogenize, normalize):
    logits, label = _random_batch(c=4, seed=21)
    label[0, :2] = 255
    g = torch.Generator().manual_seed(22)
    prev = torch.rand(label.shape, generator=g)
    prev[1, :3] = -1.0  # never seen: falls back to the current confidence
    logits.requires_grad_(True)
    loss = pat_loss(logits, label, prev_confidence=prev, curve=curve,
                    confidence=confidence, detach_weight=detach,
                    homogenize=homogenize, normalize=normalize)
    grad, = torch.autograd.grad(loss, logits)
    value, expected = _reference(logits.detach(), label, prev, kappa,
                                 confidence, detach, homogenize, normalize)
    assert loss.item() == pytest.approx(value.item(), rel=1e-5)
    torch.testing.assert_close(grad.double(), expected, rtol=1e-4,
                               atol=1e-8)
    # Z is a constant of the step: its gradient must not flow
    assert loss.requires_grad


def test_sum_is_mean_and_avg_factor_replaces_z():
    logits, label = _random_batch(c=3, seed=23)
    mean = pat_loss(logits, label, confidence='current')
    torch.testing.assert_close(
        pat_loss(logits, label, confidence='current', reduction='sum'), mean)
    pixels = float((label != 255).sum())
    raw = pat_loss(logits, label, confidence='current', normalize='none')
    torch.testing.assert_close(
        pat_loss(logits, label, confidence='current', avg_factor=pixels),
        raw)


@pytest.mark.parametrize('loss', [
    dict(type='PATLoss'),
    dict(type='WeightedCrossEntropyLoss', class_counts=[5, 3, 1]),
    dict(type='SoftmaxFocalLoss'),
    dict(type='BLVLoss', class_counts=[5, 3, 1]),
    dict(type='LogitAdjustedLoss', class_counts=[5, 3, 1]),
])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bool])
def test_float_or_bool_labels_are_refused(loss, dtype):
    module = MODELS.build(loss)
    label = torch.full((1, 2, 2), 1.7) if dtype is torch.float32 else (
        torch.ones(1, 2, 2, dtype=torch.bool))
    label[0, 0, 0] = float('nan') if dtype is torch.float32 else False
    with pytest.raises(ValueError, match='labels must be integer class '
                       r'indices, got a torch\.(float32|bool) tensor'):
        module(torch.randn(1, 3, 2, 2), label)


@pytest.mark.parametrize('loss', [
    dict(type='PATLoss'),
    dict(type='WeightedCrossEntropyLoss', class_counts=[5, 3, 1]),
    dict(type='SoftmaxFocalLoss'),
    dict(type='BLVLoss', class_counts=[5, 3, 1]),
    dict(type='LogitAdjustedLoss', class_counts=[5, 3, 1]),
    dict(type='CrossEntropyLoss'),  # MMSeg's, for comparison
])
@pytest.mark.parametrize('shape', [(0, 4, 4), (2, 0, 4)])
def test_empty_batch_or_crop_gives_zero(loss, shape):
    module = MODELS.build(loss)
    logits = torch.randn(shape[0], 3, *shape[1:], requires_grad=True)
    label = torch.zeros(shape, dtype=torch.long)
    value = module(logits, label)
    assert value.item() == 0.0
    value.backward()  # and the step can go on
    assert module(logits, label, reduction_override='none').shape == shape


@pytest.mark.parametrize('option,value', [
    ('tau', float('nan')), ('tau', '1'), ('tau', 0), ('tau', True),
    ('homogenize', []), ('homogenize', None), ('curve', {'ina': 1}),
    ('max_log_weight', -1.0), ('max_log_weight', float('inf')),
])
def test_bad_option_values_get_the_option_message(option, value):
    with pytest.raises(ValueError, match=rf'^{option} must be'):
        MODELS.build(dict(type='PATLoss', **{option: value}))
    logits, label = _random_batch(c=3)
    with pytest.raises(ValueError, match=rf'^{option} must be'):
        pat_loss(logits, label, **{option: value})


def test_non_finite_loss_is_named_once_in_training(monkeypatch):
    """A NaN training loss is kept on the device and said at the next
    periodic check (no read from the device per call), once."""
    monkeypatch.setattr(pixel_loss, 'CHECK_INTERVAL', 3)
    loss = MODELS.build(dict(type='PATLoss', confidence='current'))
    logits, label = _random_batch(c=3, seed=24)
    broken = logits.clone()
    broken[0, 0, 0, 0] = float('nan')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        loss(logits, label)  # call 0: a check, nothing to say yet
        loss(broken, label)  # call 1: NaN
        loss(logits, label)  # call 2: no check
    with pytest.warns(UserWarning, match='was NaN or inf in a training '
                      'iteration of its last 3 calls: the logits hold NaN'):
        loss(logits, label)  # call 3: the check says it
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for _ in range(7):
            loss(broken, label)  # once only
    loss = MODELS.build(dict(type='PATLoss', confidence='current')).eval()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for _ in range(7):
            loss(broken, label)  # evaluation: not a training loss


def test_points_equal_the_same_pixels_as_a_map():
    """PointRend's point head gives logits (N, C, P) and labels (N, P)."""
    logits, label = _random_batch(n=2, c=5, h=1, w=40, seed=25)
    points, point_labels = logits[:, :, 0], label[:, 0]
    point_labels[0, :5] = 255
    prev = torch.rand(point_labels.shape)
    prev[1, :10] = -1.0
    for kwargs in [dict(), dict(homogenize='class'),
                   dict(confidence='current', detach_weight=False,
                        normalize='none')]:
        on_points = pat_loss(points, point_labels, prev_confidence=prev,
                             **kwargs)
        on_map = pat_loss(points[..., None], point_labels[..., None],
                          prev_confidence=prev[..., None], **kwargs)
        torch.testing.assert_close(on_points, on_map)
    module = MODELS.build(dict(type='PATLoss', curve='inap'))
    module.exchange = ConfidenceExchange(previous=[torch.rand(6, 7)] * 2,
                                         writer=module)
    value = module(points, point_labels)  # no stored map fits: current q
    torch.testing.assert_close(
        value, pat_loss(points, point_labels, curve='inap'))
    assert module.exchange.current is None  # a (N, P) map is not stored
    assert module(points, point_labels,
                  reduction_override='none').shape == point_labels.shape


def test_exchange_gives_previous_and_receives_current():
    """The loss reads the hook's stored maps (padded to the batch) and
    leaves its detached current confidence, -1 where ignored."""
    logits, label = _random_batch(n=2, c=3, h=6, w=7, seed=26)
    label[1, 0] = 255
    stored = [torch.rand(6, 7), torch.rand(5, 6)]  # the second is padded
    stored[0][:2] = -1.0  # never seen
    loss = MODELS.build(dict(type='PATLoss'))
    loss.exchange = ConfidenceExchange(previous=stored, writer=loss)
    value = loss(logits, label)
    prev = torch.full(label.shape, -1.0)
    prev[0] = stored[0]
    prev[1, :5, :6] = stored[1]
    torch.testing.assert_close(value,
                               pat_loss(logits, label, prev_confidence=prev))
    p = logits.softmax(1).gather(1, label.clamp(max=2)[:, None])[:, 0]
    torch.testing.assert_close(loss.exchange.current,
                               torch.where(label == 255, -1.0, p))
    assert loss.exchange.label is label


def test_memory_panel_weights_follow_homogenize():
    """The panel's weight map is the loss's: with one stored confidence
    everywhere, 'none' gives every valid pixel the same weight, 'class'
    gives the small class's pixels the larger one."""
    label = torch.zeros(8, 10, dtype=torch.long)
    label[:, :2] = 1  # 16 pixels of class 1, 64 of class 0
    label[0] = 255
    stored = torch.full(label.shape, 0.5)
    current = torch.where(label == 255, -1.0, 0.8)
    image = torch.zeros(3, 8, 10)
    panels = {
        homogenize: memory_panel(image, label, stored, current, 2,
                                 homogenize=homogenize)[:, 30:]
        for homogenize in ('none', 'class')
    }
    valid = (label != 255).numpy()
    small = (label == 1).numpy()
    assert len(np.unique(panels['none'][valid], axis=0)) == 1
    colours = panels['class']
    assert len(np.unique(colours[small], axis=0)) == 1
    assert len(np.unique(colours[valid & ~small], axis=0)) == 1
    # magma: the larger weight is the brighter colour
    assert colours[small][0].sum() > colours[valid & ~small][0].sum()
    assert np.all(colours[~valid] == 0)
