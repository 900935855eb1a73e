"""LongTailIoUMetric against MMSeg's IoUMetric and an independent numpy
computation of per-class IoU / accuracy and their group means."""
import math
import re
from unittest import mock

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.registry import METRICS
from mmseg.structures import SegDataSample

from mmseg_pat.datasets.class_statistics import save_class_counts
from mmseg_pat.evaluation.metrics import long_tail_iou_metric

CLASSES = ('road', 'car', 'person', 'pole', 'sign', 'bus', 'train')
# 7 classes: head = {0, 1}, body = {2, 3, 4}, tail = {5, 6} (2 / 3 / 2).
COUNTS = [9000, 4000, 300, 200, 100, 20, 5]
GROUPS = dict(head=[0, 1], body=[2, 3, 4], tail=[5, 6])


def _samples(preds, gts):
    """Data samples as MMEngine's Evaluator hands them to a metric."""
    samples = []
    for pred, gt in zip(preds, gts):
        sample = SegDataSample()
        sample.pred_sem_seg = PixelData(data=torch.as_tensor(pred)[None])
        sample.gt_sem_seg = PixelData(data=torch.as_tensor(gt)[None])
        samples.append(sample.to_dict())
    return samples


def _random_data(seed=0, absent=(), n=3, shape=(12, 10)):
    """Predictions that are right ~60% of the time; classes in ``absent``
    appear neither in the labels nor in the predictions."""
    rng = np.random.default_rng(seed)
    present = [c for c in range(len(CLASSES)) if c not in absent]
    gts, preds = [], []
    for _ in range(n):
        gt = rng.choice(present, size=shape)
        pred = np.where(rng.random(shape) < 0.6, gt,
                        rng.choice(present, size=shape))
        gt[rng.random(shape) < 0.1] = 255
        gts.append(gt)
        preds.append(pred)
    return preds, gts


def _run(metric, preds, gts, batch=2):
    metric.dataset_meta = dict(classes=CLASSES)
    samples = _samples(preds, gts)
    for i in range(0, len(samples), batch):
        metric.process({}, samples[i:i + batch])
    return metric.compute_metrics(metric.results)


def _numpy_reference(preds, gts, num_classes=len(CLASSES)):
    """Per-class IoU and accuracy (NaN where undefined), in [0, 1]."""
    pred = np.concatenate([p.ravel() for p in preds])
    gt = np.concatenate([g.ravel() for g in gts])
    keep = gt != 255
    pred, gt = pred[keep], gt[keep]
    iou, acc = np.full(num_classes, np.nan), np.full(num_classes, np.nan)
    for c in range(num_classes):
        inter = np.sum((pred == c) & (gt == c))
        union = np.sum((pred == c) | (gt == c))
        if union:
            iou[c] = inter / union
        if np.sum(gt == c):
            acc[c] = inter / np.sum(gt == c)
    return iou, acc


def _group_mean(values, index):
    kept = [values[i] for i in index if not math.isnan(values[i])]
    return 100 * sum(kept) / len(kept) if kept else math.nan


@pytest.mark.parametrize('absent', [(), (3, ), (5, 6)],
                         ids=['all-present', 'body-class-absent',
                              'tail-absent'])
def test_matches_mmseg_and_numpy(absent):
    preds, gts = _random_data(seed=len(absent), absent=absent)
    ours = _run(
        METRICS.build(dict(type='LongTailIoUMetric', class_counts=COUNTS)),
        preds, gts)
    mmseg = _run(METRICS.build(dict(type='IoUMetric')), preds, gts)
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert ours[key] == mmseg[key], key

    iou, acc = _numpy_reference(preds, gts)
    assert ours['mIoU'] == pytest.approx(100 * np.nanmean(iou), abs=0.006)
    for group, index in GROUPS.items():
        for key, values in (('mIoU', iou), ('mAcc', acc)):
            expected = _group_mean(values, index)
            got = ours[f'{group}_{key}']
            if math.isnan(expected):
                assert math.isnan(got), (group, key)
            else:
                assert got == pytest.approx(expected, abs=0.006), (group, key)
    for c, name in enumerate(CLASSES):
        got = ours[f'IoU.{name}']
        if math.isnan(iou[c]):
            assert math.isnan(got) and c in absent
        else:
            assert got == pytest.approx(100 * iou[c], abs=0.006)


def test_perfect_and_disjoint_predictions_by_hand():
    """Head classes predicted perfectly, tail classes always wrong."""
    gt = np.array([[0, 0, 1, 1, 2, 3, 4, 5, 6, 255]])
    pred = np.array([[0, 0, 1, 1, 2, 3, 4, 0, 0, 3]])
    metrics = _run(
        METRICS.build(dict(type='LongTailIoUMetric', class_counts=COUNTS)),
        [pred], [gt])
    assert metrics['head_mAcc'] == 100.0
    assert metrics['body_mIoU'] == 100.0
    assert metrics['tail_mIoU'] == 0.0 and metrics['tail_mAcc'] == 0.0
    # road: 2 right, 2 tail pixels predicted as road -> 2 / 4
    assert metrics['head_mIoU'] == 75.0
    assert metrics['IoU.road'] == 50.0 and metrics['IoU.bus'] == 0.0


def test_class_counts_from_json(tmp_path):
    path = str(tmp_path / 'counts.json')
    save_class_counts(path, COUNTS, CLASSES)
    preds, gts = _random_data(seed=5)
    from_file = _run(
        METRICS.build(dict(type='LongTailIoUMetric', class_counts=path)),
        preds, gts)
    from_list = _run(
        METRICS.build(dict(type='LongTailIoUMetric', class_counts=COUNTS)),
        preds, gts)
    assert from_file.keys() == from_list.keys()
    np.testing.assert_array_equal(
        list(from_file.values()), list(from_list.values()))


def test_groups_follow_counts_not_class_order():
    """Reversing the counts swaps head and tail."""
    preds, gts = _random_data(seed=6)
    forward = _run(
        METRICS.build(dict(type='LongTailIoUMetric', class_counts=COUNTS)),
        preds, gts)
    reverse = _run(
        METRICS.build(
            dict(type='LongTailIoUMetric', class_counts=COUNTS[::-1])),
        preds, gts)
    assert reverse['head_mIoU'] == forward['tail_mIoU']
    assert reverse['tail_mIoU'] == forward['head_mIoU']


def test_nan_to_num_and_extra_iou_metrics():
    preds, gts = _random_data(seed=7, absent=(5, 6))
    kwargs = dict(iou_metrics=['mIoU', 'mFscore'], nan_to_num=0)
    ours = _run(
        METRICS.build(
            dict(type='LongTailIoUMetric', class_counts=COUNTS, **kwargs)),
        preds, gts)
    mmseg = _run(METRICS.build(dict(type='IoUMetric', **kwargs)), preds, gts)
    for key, value in mmseg.items():
        assert ours[key] == value, key
    assert ours['tail_mIoU'] == 0.0 and ours['IoU.train'] == 0.0


def test_wrong_number_of_counts_fails_at_first_batch():
    metric = METRICS.build(
        dict(type='LongTailIoUMetric', class_counts=COUNTS[:-1]))
    preds, gts = _random_data()
    with pytest.raises(
            ValueError,
            match='class_counts has 6 entries but the model has 7 classes'):
        _run(metric, preds, gts)
    assert metric.results == []


def test_prints_group_table():
    preds, gts = _random_data(seed=8)
    metric = METRICS.build(
        dict(type='LongTailIoUMetric', class_counts=COUNTS))
    with mock.patch.object(long_tail_iou_metric, 'print_log') as log:
        metrics = _run(metric, preds, gts)
    table = log.call_args_list[-1].args[0]
    for group, size in (('head', 2), ('body', 3), ('tail', 2), ('all', 7)):
        assert re.search(rf'\|\s+{group}\s+\|\s+{size}\s+\|', table), group
    assert str(metrics['tail_mIoU']) in table
