"""The generated long-tailed demo dataset."""
import os
import os.path as osp

import numpy as np
import pytest
from mmseg.registry import DATASETS
from PIL import Image

from mmseg_pat.datasets import class_probabilities, generate_long_tail_shapes

from conftest import TINY_SHAPES


def _label_histogram(root, split, num_classes):
    folder = osp.join(root, 'ann_dir', split)
    counts = np.zeros(num_classes, np.int64)
    for name in sorted(os.listdir(folder)):
        label = np.array(Image.open(osp.join(folder, name)))
        counts += np.bincount(label.ravel(), minlength=num_classes)
    return counts


def test_probabilities_fall_geometrically():
    p = class_probabilities(5, 16.0)
    assert p.sum() == pytest.approx(1.0)
    assert p[0] / p[-1] == pytest.approx(16.0)
    assert np.allclose(p[1:] / p[:-1], 16.0**(-1 / 4))


def test_generation_is_deterministic_and_long_tailed(tmp_path):
    params = dict(TINY_SHAPES, num_train=60, num_val=2, imbalance_ratio=30.0)
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    generate_long_tail_shapes(a, **params)
    generate_long_tail_shapes(b, **params)
    for name in ('00000.png', '00059.png'):
        for sub in ('img_dir', 'ann_dir'):
            pa = osp.join(a, sub, 'train', name)
            pb = osp.join(b, sub, 'train', name)
            assert np.array_equal(np.array(Image.open(pa)),
                                  np.array(Image.open(pb)))
    counts = _label_histogram(a, 'train', 4)
    shapes = counts[1:]
    # head shape class clearly more frequent than the tail one
    assert shapes[0] > 5 * shapes[-1] > 0


def test_other_parameters_regenerate(tmp_path):
    root = str(tmp_path / 'shapes')
    generate_long_tail_shapes(root, **TINY_SHAPES)
    first = np.array(Image.open(osp.join(root, 'img_dir/train/00000.png')))
    generate_long_tail_shapes(root, **dict(TINY_SHAPES, seed=2))
    second = np.array(Image.open(osp.join(root, 'img_dir/train/00000.png')))
    assert not np.array_equal(first, second)
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.')]


def test_dataset_through_registry(shapes_root):
    ds = DATASETS.build(
        dict(
            type='LongTailShapesDataset',
            data_root=shapes_root,
            generation=TINY_SHAPES,
            data_prefix=dict(
                img_path='img_dir/train', seg_map_path='ann_dir/train'),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations')
            ]))
    assert len(ds) == TINY_SHAPES['num_train']
    assert ds.metainfo['classes'] == ('background', 'square', 'disc',
                                      'triangle')
    sample = ds[0]
    assert sample['img'].shape == (32, 32, 3)
    assert set(np.unique(sample['gt_seg_map'])) <= {0, 1, 2, 3}
