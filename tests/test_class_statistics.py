"""Class pixel counts against numpy bincounts of the raw label files, the
JSON round trip, the head / body / tail split and the command-line tool.

The Cityscapes and NYUv2 counts run on the generated data roots and, where
``[real]`` is in a test's id, on the real samples' long-tailed labels."""
import glob
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
from mmseg.registry import DATASETS
from PIL import Image

from mmseg_pat.datasets.class_statistics import (class_pixel_counts,
                                                 frequency_groups,
                                                 load_class_counts,
                                                 log_class_prior,
                                                 save_class_counts)

from conftest import PROJECT, TINY_SHAPES

SHAPES_BASE = osp.join(PROJECT, 'configs/_base_/datasets/long_tail_shapes.py')
NYU_CLASSES = tuple(f'class{i}' for i in range(1, 14))


def _bincount_files(pattern, num_classes, mapping=None):
    """Independent count: numpy over the raw PNGs, optionally remapped by
    a lookup table of the 256 raw values."""
    counts = np.zeros(num_classes, np.int64)
    files = sorted(glob.glob(pattern))
    assert files, pattern
    for path in files:
        raw = np.array(Image.open(path))
        label = raw if mapping is None else mapping[raw]
        label = label[label != 255]
        counts += np.bincount(label.ravel(), minlength=num_classes)
    return counts


def _cityscapes(data_root, pipeline):
    return DATASETS.build(
        dict(
            type='CityscapesDataset',
            data_root=data_root,
            data_prefix=dict(
                img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
            pipeline=pipeline))


def _shapes(root, **kwargs):
    return DATASETS.build(
        dict(
            type='LongTailShapesDataset',
            data_root=root,
            generation=dict(TINY_SHAPES),
            data_prefix=dict(
                img_path='img_dir/train', seg_map_path='ann_dir/train'),
            pipeline=[dict(type='LoadAnnotations')],
            **kwargs))


# --- counting ---------------------------------------------------------------


@pytest.mark.parametrize('pipeline', [
    [dict(type='LoadImageFromFile'),
     dict(type='LoadAnnotations')],
    [],  # no LoadAnnotations: MMSeg's default one is used
])
def test_cityscapes_counts_equal_bincount_of_train_ids(
        cityscapes_data, pipeline):
    counts = class_pixel_counts(_cityscapes(cityscapes_data, pipeline))
    pattern = osp.join(cityscapes_data,
                       'gtFine/train/*/*_gtFine_labelTrainIds.png')
    expected = _bincount_files(pattern, 19)
    np.testing.assert_array_equal(counts, expected)
    assert counts.dtype == np.int64 and counts.sum() > 0
    pixels = sum(np.prod(Image.open(path).size) for path in glob.glob(pattern))
    assert counts.sum() < pixels  # 255 pixels are not counted


def test_generated_counts_equal_bincount(shapes_root):
    counts = class_pixel_counts(_shapes(shapes_root))
    expected = _bincount_files(
        osp.join(shapes_root, 'ann_dir/train/*.png'), 4)
    np.testing.assert_array_equal(counts, expected)
    # the shape classes are long-tailed: background, then falling counts
    assert counts.sum() == TINY_SHAPES['num_train'] * 32 * 32


def test_label_map_of_a_class_subset(shapes_root):
    """Classes ('background', 'disc'): raw 2 (disc) becomes 1, the other
    shapes become 255, as LoadAnnotations maps them."""
    dataset = _shapes(
        shapes_root, metainfo=dict(classes=('background', 'disc')))
    assert dataset.label_map is not None
    mapping = np.full(256, 255, np.int64)
    mapping[0], mapping[2] = 0, 1
    expected = _bincount_files(
        osp.join(shapes_root, 'ann_dir/train/*.png'), 2, mapping)
    np.testing.assert_array_equal(class_pixel_counts(dataset), expected)


def test_reduce_zero_label_on_nyu(nyu_data):
    """NYUv2 13 classes: raw 0 is unlabeled, raw k is class k - 1."""
    dataset = DATASETS.build(
        dict(
            type='BaseSegDataset',
            data_root=nyu_data,
            data_prefix=dict(img_path='image/test', seg_map_path='label/test'),
            img_suffix='.png',
            seg_map_suffix='.png',
            reduce_zero_label=True,
            metainfo=dict(classes=NYU_CLASSES),
            pipeline=[dict(type='LoadAnnotations')]))
    mapping = np.arange(256) - 1
    mapping[0] = 255
    expected = _bincount_files(
        osp.join(nyu_data, 'label/test/*.png'), 13, mapping)
    np.testing.assert_array_equal(class_pixel_counts(dataset), expected)


def test_concat_dataset_sums_parts(shapes_root):
    parts = [
        dict(
            type='LongTailShapesDataset',
            data_root=shapes_root,
            generation=dict(TINY_SHAPES),
            data_prefix=dict(
                img_path=f'img_dir/{split}', seg_map_path=f'ann_dir/{split}'),
            pipeline=[]) for split in ('train', 'val')
    ]
    dataset = DATASETS.build(dict(type='ConcatDataset', datasets=parts))
    expected = sum(
        _bincount_files(osp.join(shapes_root, f'ann_dir/{split}/*.png'), 4)
        for split in ('train', 'val'))
    np.testing.assert_array_equal(class_pixel_counts(dataset), expected)


def test_label_outside_classes_raises(shapes_root):
    """Two class names but raw labels up to 3: a config mistake."""
    dataset = DATASETS.build(
        dict(
            type='BaseSegDataset',
            data_root=shapes_root,
            data_prefix=dict(
                img_path='img_dir/train', seg_map_path='ann_dir/train'),
            img_suffix='.png',
            seg_map_suffix='.png',
            metainfo=dict(classes=('a', 'b')),
            pipeline=[]))
    with pytest.raises(
            ValueError,
            match=r'00000\.png: label values \[2\] are outside \[0, 2\)'):
        class_pixel_counts(dataset)


# --- JSON -------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    path = str(tmp_path / 'sub' / 'counts.json')
    written = save_class_counts(path, [30, 0, 60, 10], 'abcd')
    with open(path) as f:
        content = json.load(f)
    assert content == written
    assert content['classes'] == ['a', 'b', 'c', 'd']
    assert content['counts'] == [30, 0, 60, 10]
    assert content['frequencies'] == [0.3, 0.0, 0.6, 0.1]
    assert content['groups'] == dict(head=[2], body=[0, 3], tail=[1])
    loaded = load_class_counts(path, num_classes=4)
    np.testing.assert_array_equal(loaded, [30, 0, 60, 10])
    assert loaded.dtype == np.int64


def test_load_plain_json_list(tmp_path):
    path = str(tmp_path / 'counts.json')
    with open(path, 'w') as f:
        json.dump([5, 6], f)
    np.testing.assert_array_equal(load_class_counts(path), [5, 6])


def test_load_checks_number_of_classes():
    with pytest.raises(
            ValueError,
            match=r'^class_counts has 17 entries but the model has 19 '
            r'classes; recompute with tools/analysis/class_statistics\.py '):
        load_class_counts(list(range(17)), num_classes=19)


@pytest.mark.parametrize('counts,match', [
    ([3, -1], r'whole numbers >= 0\), got -1\.0 at index 1'),
    ([3, 1.5], r'got 1\.5 at index 1'),
    ([3, float('nan')], r'got nan at index 1'),
    ([], 'non-empty'),
    ([[1, 2], [3, 4]], r'shape \(2, 2\)'),
])
def test_load_rejects_bad_counts(counts, match):
    with pytest.raises(ValueError, match=match):
        load_class_counts(counts)


def test_log_class_prior_treats_empty_class_as_one_pixel():
    np.testing.assert_allclose(
        log_class_prior([6, 0, 3]), np.log([6 / 10, 1 / 10, 3 / 10]))


# --- head / body / tail -----------------------------------------------------


@pytest.mark.parametrize('counts,expected', [
    # 7 classes: 2 / 3 / 2, each group from the most to the least frequent
    ([1000, 10, 500, 0, 50, 5000, 200],
     dict(head=[5, 0], body=[2, 6, 4], tail=[1, 3])),
    # 4 classes: 1 / 2 / 1
    ([5, 50, 500, 5000], dict(head=[3], body=[2, 1], tail=[0])),
    # 6 classes, three of them empty: all three are tail
    ([5, 0, 0, 0, 9, 7], dict(head=[4, 5], body=[0], tail=[1, 2, 3])),
    # ties: the lower index counts as the more frequent
    ([3, 3, 3], dict(head=[0], body=[1], tail=[2])),
    # fewer than three classes: no head, no tail
    ([8, 2], dict(head=[], body=[0, 1], tail=[])),
    # every class empty: all tail
    ([0, 0, 0, 0], dict(head=[], body=[], tail=[0, 1, 2, 3])),
])
def test_frequency_groups_table(counts, expected):
    assert frequency_groups(counts) == expected


def test_frequency_groups_of_19_classes_is_6_7_6():
    counts = np.arange(19)[::-1] * 100 + 1  # class 0 most frequent
    groups = frequency_groups(counts)
    assert groups == dict(
        head=list(range(6)), body=list(range(6, 13)),
        tail=list(range(13, 19)))


# --- command-line tool ------------------------------------------------------


def _load_cli():
    path = osp.join(PROJECT, 'tools', 'analysis', 'class_statistics.py')
    spec = importlib.util.spec_from_file_location('class_statistics_cli',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shapes_config(tmp_path, data_root):
    """A config on the tiny generated dataset (its parameters must match
    the fixture's, or the dataset would be generated again)."""
    config = tmp_path / 'shapes.py'
    dataset = dict(data_root=data_root, generation=dict(TINY_SHAPES))
    config.write_text(f'_base_ = [{SHAPES_BASE!r}]\n'
                      f'train_dataloader = dict(dataset={dataset!r})\n'
                      f'val_dataloader = dict(dataset={dataset!r})\n')
    return str(config)


def test_cli_writes_json_and_prints_table(tmp_path, shapes_root, capsys):
    config = _shapes_config(tmp_path, 'elsewhere')
    out = str(tmp_path / 'counts.json')
    content = _load_cli().main([
        config, '--out', out, '--cfg-options',
        f'train_dataloader.dataset.data_root={shapes_root}'
    ])
    expected = _bincount_files(
        osp.join(shapes_root, 'ann_dir/train/*.png'), 4)
    np.testing.assert_array_equal(load_class_counts(out, 4), expected)
    assert content['classes'] == ['background', 'square', 'disc', 'triangle']
    assert content['groups'] == frequency_groups(expected)
    printed = capsys.readouterr().out
    assert 'triangle' in printed and 'tail' in printed and out in printed


def test_cli_val_split(tmp_path, shapes_root):
    out = str(tmp_path / 'val.json')
    _load_cli().main(
        [_shapes_config(tmp_path, shapes_root), '--split', 'val', '--out',
         out])
    expected = _bincount_files(osp.join(shapes_root, 'ann_dir/val/*.png'), 4)
    np.testing.assert_array_equal(load_class_counts(out), expected)
