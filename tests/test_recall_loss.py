"""RecallLoss (Tian et al., ICRA 2022, arXiv 2106.14917) against a naive
per-pixel loop, hand-computed values and PyTorch's weighted cross-entropy;
its running recall through training steps, evaluation and checkpoints.

The contract every baseline keeps (reductions, ignored pixels, PointRend's
points, OHEM, autocast) is tested in ``test_baseline_losses.py``, the
absence of host synchronisation in ``test_host_syncs.py``."""
import copy
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mmseg_pat  # noqa: F401  (registers the losses)
from mmseg_pat.models.losses.recall import class_recall_counts, recall_loss


def _build(momentum=0.0, train=True):
    return MODELS.build(dict(type='RecallLoss', momentum=momentum)).train(
        train)


def _naive_steps(batches, momentum, ignore_index):
    """Loss, running recall and seen flags after each batch, by loops over
    the pixels in plain Python: TP and TP + FN of each class from the
    argmax, R_c <- r_c the first time, m R_c + (1 - m) r_c afterwards, for
    the classes with pixels in the batch; the mean over valid pixels of
    -(1 - R_y) log p_y with the updated R."""
    num_classes = batches[0][0].shape[1]
    recall = [0.0] * num_classes
    seen = [False] * num_classes
    steps = []
    for logits, label in batches:
        z = logits.double().numpy()
        y = label.numpy()
        pixels = [(b, i, j) for b, i, j in np.ndindex(*y.shape)
                  if y[b, i, j] != ignore_index]
        hits = [0] * num_classes
        positives = [0] * num_classes
        for b, i, j in pixels:
            scores = list(z[b, :, i, j])
            predicted = scores.index(max(scores))
            positives[y[b, i, j]] += 1
            hits[y[b, i, j]] += int(predicted == y[b, i, j])
        for c in range(num_classes):
            if positives[c] == 0:
                continue
            batch_recall = hits[c] / positives[c]
            recall[c] = (momentum * recall[c] + (1 - momentum) * batch_recall
                         if seen[c] else batch_recall)
            seen[c] = True
        terms = []
        for b, i, j in pixels:
            scores = z[b, :, i, j]
            top = max(scores)
            log_sum = top + math.log(sum(math.exp(s - top) for s in scores))
            k = y[b, i, j]
            terms.append((1 - recall[k]) * (log_sum - scores[k]))
        steps.append((sum(terms) / len(pixels), list(recall), list(seen)))
    return steps


def _batches(ignore_index, seed=0):
    """Three batches of 4 classes with ignored pixels: class 3 absent from
    the first (no value yet), class 1 from the second (keeps its value);
    in the third every pixel of class 2 is found (recall 1, weight 0)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for step, absent in enumerate([3, 1, None]):
        logits = torch.randn(2, 4, 3, 5, generator=g) * 2
        label = torch.randint(0, 4, (2, 3, 5), generator=g)
        if absent is not None:
            label[label == absent] = (absent + 1) % 4
        if step == 2:
            boost = (label == 2).unsqueeze(1) & (
                torch.arange(4).view(1, 4, 1, 1) == 2)
            logits = logits + 20 * boost
        label[0, 0] = ignore_index
        label[1, 2, :2] = ignore_index
        batches.append((logits, label))
    return batches


@pytest.mark.parametrize('ignore_index', [255, -1])
@pytest.mark.parametrize('momentum', [0.0, 0.5, 0.9])
def test_matches_naive_loop_over_steps(momentum, ignore_index):
    batches = _batches(ignore_index)
    expected = _naive_steps(batches, momentum, ignore_index)
    loss = _build(momentum)
    for (logits, label), (value, recall, seen) in zip(batches, expected):
        got = loss(logits, label, ignore_index=ignore_index)
        assert got.item() == pytest.approx(value, rel=1e-5)
        np.testing.assert_allclose(
            loss.running_recall.numpy(), recall, rtol=1e-6)
        assert loss.recall_seen.tolist() == seen
    # the cases happened: the absent class of the first batch had no value,
    # the second kept class 1's, the third found all of class 2
    assert expected[0][2] == [True, True, True, False]
    assert expected[1][1][1] == expected[0][1][1]
    assert expected[2][1][2] == pytest.approx(
        momentum * expected[1][1][2] + 1 - momentum)


def test_gradient_is_weighted_cross_entropy_with_constant_weights():
    """The recall is not differentiated: the gradient is PyTorch's
    cross-entropy's with the weights 1 - R as constants, summed over the
    pixels and divided by the number of valid pixels (not by the
    weights)."""
    logits, label = _batches(255)[2]
    _, recall, _ = _naive_steps([(logits, label)], 0.0, 255)[0]
    logits.requires_grad_(True)
    grad, = torch.autograd.grad(_build()(logits, label), logits)
    valid = (label != 255).sum()
    reference = F.cross_entropy(
        logits,
        label,
        weight=1 - torch.tensor(recall),
        ignore_index=255,
        reduction='sum') / valid
    expected, = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(grad, expected)


def _two_classes(labels, predictions):
    """Logits (1, 2, 1, P) with p = 3/4 for the predicted class."""
    z = torch.tensor([[math.log(3), 0.0] if k == 0 else [0.0, math.log(3)]
                      for k in predictions]).T
    return z.reshape(1, 2, 1, -1), torch.tensor(labels).view(1, 1, -1)


def test_hand_computed():
    """Labels (0, 0, 1, 1), predictions (0, 1, 1, 1): recall (1/2, 1), so
    weights (1/2, 0); the pixels of class 0 have p_y = 3/4 and 1/4."""
    logits, label = _two_classes([0, 0, 1, 1], [0, 1, 1, 1])
    loss = _build()
    expected = 0.5 * (math.log(4 / 3) + math.log(4)) / 4
    assert loss(logits, label).item() == pytest.approx(expected, rel=1e-6)
    assert loss.running_recall.tolist() == [0.5, 1.0]
    pixel = loss(logits, label, reduction_override='none')
    torch.testing.assert_close(
        pixel.flatten(),
        torch.tensor([0.5 * math.log(4 / 3), 0.5 * math.log(4), 0, 0]))


def test_running_update_by_hand():
    """m = 0.5: recall (1/2, 1), then a batch of class 0 only, all found:
    R_0 = 0.5 * 1/2 + 0.5 * 1 = 3/4, R_1 keeps 1."""
    loss = _build(momentum=0.5)
    loss(*_two_classes([0, 0, 1, 1], [0, 1, 1, 1]))
    logits, label = _two_classes([0, 0, 0, 0], [0, 0, 0, 0])
    value = loss(logits, label)
    assert loss.running_recall.tolist() == [0.75, 1.0]
    assert value.item() == pytest.approx(0.25 * math.log(4 / 3), rel=1e-6)


def test_before_any_value():
    """A class not yet seen has recall 0 (weight 1) and is marked unseen;
    its first batch sets its value without blending in that 0."""
    loss = _build(momentum=0.9)
    loss(*_two_classes([0, 0, 0, 0], [0, 1, 1, 1]))
    assert loss.running_recall.tolist() == [0.25, 0.0]
    assert loss.recall_seen.tolist() == [True, False]
    loss(*_two_classes([1, 1, 1, 1], [1, 1, 1, 0]))
    assert loss.running_recall.tolist() == [0.25, 0.75]
    assert loss.recall_seen.tolist() == [True, True]


def test_counts_of_a_batch():
    logits, label = _two_classes([0, 0, 1, 1, 255], [0, 1, 1, 1, 0])
    hits, positives = class_recall_counts(logits, label)
    assert hits.tolist() == [1, 2] and positives.tolist() == [2, 2]
    label[label == 255] = 0  # an ignore index among the classes
    hits, positives = class_recall_counts(logits, label, ignore_index=1)
    assert hits.tolist() == [2, 0] and positives.tolist() == [3, 0]


def test_a_tie_counts_as_found():
    """Equal logits: the labelled class is among the largest, so found
    (argmax, which takes the first, would say class 0 for both)."""
    hits, positives = class_recall_counts(
        torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 1]]]))
    assert hits.tolist() == [1, 1] and positives.tolist() == [1, 1]


def test_updated_only_by_a_training_step():
    """Evaluation mode and torch.no_grad() (OHEM's ranking) compute the same
    loss as a training step would, and leave the running recall alone."""
    first, second = _batches(255)[:2]
    loss = _build(momentum=0.5)
    loss(*first)
    state = copy.deepcopy(loss.state_dict())
    trained = copy.deepcopy(loss)
    expected = trained(*second)
    loss.eval()
    torch.testing.assert_close(loss(*second), expected)
    loss.train()
    with torch.no_grad():
        torch.testing.assert_close(loss(*second), expected)
    for key, value in loss.state_dict().items():
        torch.testing.assert_close(value, state[key])
    assert not torch.equal(trained.running_recall, loss.running_recall)


def test_state_dict_round_trip():
    batches = _batches(255)
    loss = _build(momentum=0.9)
    for batch in batches[:2]:
        loss(*batch)
    assert set(loss.state_dict()) == {'running_recall', 'recall_seen'}
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    restored = _build(momentum=0.9)  # fresh: no buffers sized yet
    restored.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(restored.running_recall, loss.running_recall)
    assert torch.equal(restored.recall_seen, loss.recall_seen)
    torch.testing.assert_close(restored(*batches[2]), loss(*batches[2]))
    torch.testing.assert_close(restored.running_recall, loss.running_recall)
    other = _build()
    other(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(RuntimeError, match='size mismatch'):
        other.load_state_dict(loss.state_dict())


def test_running_recall_is_in_the_heads_checkpoint():
    head = MODELS.build(
        dict(
            type='FCNHead',
            in_channels=4,
            channels=4,
            num_convs=1,
            num_classes=4,
            loss_decode=dict(type='RecallLoss')))
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 8, 8)))
    logits = torch.randn(1, 4, 8, 8, requires_grad=True)
    value = head.loss_by_feat(logits, [sample])['loss_recall']
    value.backward()
    state = head.state_dict()
    assert state['loss_decode.running_recall'].shape == (4, )
    assert state['loss_decode.recall_seen'].all()


def test_one_module_one_number_of_classes():
    loss = _build()
    loss(*_batches(255)[0])
    with pytest.raises(ValueError,
                       match='holds the recall of 4 classes but the logits '
                       'have 3'):
        loss(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def test_pixel_weights_do_not_change_the_counts():
    """Per-pixel weights w (OHEM's) multiply the loss and divide the mean;
    the recall is counted over all valid pixels."""
    logits, label = _batches(255)[0]
    _, recall, _ = _naive_steps([(logits, label)], 0.0, 255)[0]
    weight = torch.rand(label.shape,
                        generator=torch.Generator().manual_seed(1))
    ce = F.cross_entropy(logits, label, ignore_index=255, reduction='none')
    class_weight = 1 - torch.tensor(recall)
    w = torch.where(label != 255, weight, 0.0)
    expected = (class_weight[label.clamp(max=3)] * w * ce).sum() / w.sum()
    torch.testing.assert_close(
        _build()(logits, label, weight=weight), expected)


def test_module_function_matches_class():
    logits, label = _batches(255)[1]
    loss = _build()
    value = loss(logits, label)
    torch.testing.assert_close(
        recall_loss(logits, label, loss.running_recall), value)


@pytest.mark.parametrize('shape', [(0, 4, 4), (2, 0, 4)])
def test_empty_batch_or_crop_gives_zero(shape):
    loss = _build()
    logits = torch.randn(shape[0], 3, *shape[1:], requires_grad=True)
    label = torch.zeros(shape, dtype=torch.long)
    value = loss(logits, label)
    assert value.item() == 0.0
    value.backward()
    assert loss(logits, label, reduction_override='none').shape == shape
    assert not loss.recall_seen.any()


def test_float_labels_are_refused():
    with pytest.raises(ValueError, match='labels must be integer class'):
        _build()(torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), 1.7))
