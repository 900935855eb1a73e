"""Oxford-IIIT Pet, NYUv2 and Cityscapes on the real samples in shared/data.

The expected labels are read from the raw PNG files with PIL and mapped by
hand here: trimap 1, 2, 3 -> pet 0, background 1, border 2; NYU 0 -> ignore
(255), 1..13 -> 0..12; Cityscapes train ids as stored.
"""
import glob
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmseg.registry import DATASETS
from PIL import Image

from mmseg_pat.datasets.nyu_seg import NYU13_CLASSES, NYU40_CLASSES
from mmseg_pat.datasets.oxford_pet import OxfordPetDataset

from conftest import PROJECT, SHARED_DATA

PET_ROOT = osp.join(SHARED_DATA, 'oxford_pet')
NYU_ROOT = osp.join(SHARED_DATA, 'nyu')
CITYSCAPES_ROOT = osp.join(SHARED_DATA, 'cityscapes')
LOAD = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
NYU_TEST_PREFIX = dict(img_path='image/test', seg_map_path='label/test')
# Trimap values, as documented with the dataset.
TRIMAP_CLASSES = {1: 'pet', 2: 'background', 3: 'border'}


def _list_names(path):
    """First column of the non-comment lines of an Oxford-IIIT Pet list."""
    with open(path) as f:
        return [line.split(' ')[0] for line in f if line[0] not in '#\n']


def _png(path):
    return np.array(Image.open(path))


@pytest.mark.parametrize('split', ['trainval', 'test'])
def test_oxford_pet_follows_split_list(split):
    ann_file = f'annotations/{split}.txt'
    dataset = DATASETS.build(
        dict(type='OxfordPetDataset', data_root=PET_ROOT, ann_file=ann_file))
    names = _list_names(osp.join(PET_ROOT, ann_file))
    assert isinstance(dataset, OxfordPetDataset)
    assert len(dataset) == len(names) > 0
    assert [
        osp.basename(dataset.get_data_info(i)['img_path'])
        for i in range(len(dataset))
    ] == [name + '.jpg' for name in names]
    assert dataset.metainfo['classes'] == ('pet', 'background', 'border')


def test_oxford_pet_labels_are_trimaps_minus_one():
    """Every sample, pixel by pixel: trimap 1/2/3 -> 0/1/2, no ignore."""
    classes = OxfordPetDataset.METAINFO['classes']
    trimap_to_label = np.full(256, 255, np.uint8)
    for value, name in TRIMAP_CLASSES.items():
        trimap_to_label[value] = classes.index(name)
    assert list(trimap_to_label[1:4]) == [0, 1, 2]
    histogram = np.zeros(3, np.int64)
    for split in ('trainval', 'test'):
        dataset = DATASETS.build(
            dict(
                type='OxfordPetDataset',
                data_root=PET_ROOT,
                ann_file=f'annotations/{split}.txt',
                pipeline=LOAD))
        for i in range(len(dataset)):
            sample = dataset[i]
            trimap = _png(sample['seg_map_path'])
            assert set(np.unique(trimap)) <= set(TRIMAP_CLASSES)
            expected = trimap_to_label[trimap]
            assert sample['gt_seg_map'].shape == sample['img'].shape[:2]
            assert np.array_equal(sample['gt_seg_map'], expected)
            histogram += np.bincount(trimap.ravel(), minlength=4)[1:]
    assert (histogram > 0).all()


def test_nyu_labels_are_shifted_with_unlabeled_ignored():
    dataset = DATASETS.build(
        dict(
            type='NYUv2SegDataset',
            data_root=NYU_ROOT,
            ann_file='test.txt',
            data_prefix=NYU_TEST_PREFIX,
            pipeline=LOAD))
    with open(osp.join(NYU_ROOT, 'test.txt')) as f:
        stems = f.read().split()
    assert len(dataset) == len(stems) > 0
    assert dataset.metainfo['classes'] == NYU13_CLASSES
    values = set()
    for i, stem in enumerate(stems):
        sample = dataset[i]
        raw = _png(osp.join(NYU_ROOT, 'label', 'test', stem + '.png'))
        expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
        assert sample['img'].shape == (480, 640, 3)
        assert np.array_equal(sample['gt_seg_map'], expected)
        values |= set(np.unique(sample['gt_seg_map']).tolist())
    assert 255 in values and values <= set(range(13)) | {255}
    # Without a split list the folder is listed: the same frames.
    listed = DATASETS.build(
        dict(
            type='NYUv2SegDataset',
            data_root=NYU_ROOT,
            data_prefix=NYU_TEST_PREFIX))
    assert len(listed) == len(stems)


def test_nyu_class_names_match_the_mapping_files():
    from scipy.io import loadmat
    meta = osp.join(NYU_ROOT, 'meta')
    mapping13 = loadmat(osp.join(meta, 'class13Mapping.mat'))
    names13 = [
        str(name[0])
        for name in mapping13['classMapping13']['classNames'][0, 0][0]
    ]
    assert tuple(names13) == NYU13_CLASSES
    mapping40 = loadmat(osp.join(meta, 'classMapping40.mat'))
    names40 = [str(name[0]) for name in mapping40['className'][0]]
    # The file misspells one name; the dataset spells it right.
    names40[names40.index('refridgerator')] = 'refrigerator'
    assert tuple(names40) == NYU40_CLASSES


def test_cityscapes_sample_loads_through_mmseg():
    val = DATASETS.build(
        dict(
            type='CityscapesDataset',
            data_root=CITYSCAPES_ROOT,
            data_prefix=dict(
                img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
            pipeline=LOAD))
    assert len(val.metainfo['classes']) == 19
    assert len(val) == len(
        glob.glob(osp.join(CITYSCAPES_ROOT, 'leftImg8bit/val/*/*.png')))
    sample = val[0]
    assert sample['gt_seg_map'].shape == sample['img'].shape[:2]
    assert np.array_equal(sample['gt_seg_map'], _png(sample['seg_map_path']))
    # Train frames are 2048 x 1024: read their labels only.
    train = DATASETS.build(
        dict(
            type='CityscapesDataset',
            data_root=CITYSCAPES_ROOT,
            data_prefix=dict(
                img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
            pipeline=[dict(type='LoadAnnotations')]))
    assert len(train) == len(
        glob.glob(osp.join(CITYSCAPES_ROOT, 'leftImg8bit/train/*/*.png')))
    values = set()
    for i in range(len(train)):
        values |= set(np.unique(train[i]['gt_seg_map']).tolist())
    assert 255 in values and values <= set(range(19)) | {255}


@pytest.mark.parametrize('cfg, message, converter', [
    (dict(type='OxfordPetDataset'), r"data root '.*missing' not found",
     'oxford_pet.py'),
    (dict(
        type='OxfordPetDataset',
        data_root=PET_ROOT,
        ann_file='annotations/val.txt'), r"split list '.*val\.txt' not found",
     'oxford_pet.py'),
    (dict(type='NYUv2SegDataset'), r"data root '.*missing' not found",
     'nyu.py'),
    (dict(
        type='NYUv2Seg40Dataset',
        data_root=NYU_ROOT,
        data_prefix=dict(img_path='image/test', seg_map_path='label40/test')),
     r"label folder '.*label40/test' not found", 'nyu.py'),
])
def test_missing_data_is_explained(cfg, message, converter, tmp_path):
    cfg = dict(dict(data_root=str(tmp_path / 'missing')), **cfg)
    with pytest.raises(FileNotFoundError, match=message) as error:
        DATASETS.build(cfg)
    assert f'tools/dataset_converters/{converter}' in str(error.value)


@pytest.mark.parametrize('config, data_prefix, num_classes', [
    ('oxford_pet.py', None, 3),
    ('nyu.py', NYU_TEST_PREFIX, 13),
])
def test_base_configs_run_on_the_samples(config, data_prefix, num_classes):
    cfg = Config.fromfile(
        osp.join(PROJECT, 'configs', '_base_', 'datasets', config))
    assert cfg.val_evaluator == dict(
        type='LongTailIoUMetric', class_counts='train_set',
        iou_metrics=['mIoU'])
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        dataset_cfg = dict(
            loader.dataset,
            data_root=osp.join(SHARED_DATA, osp.basename(cfg.data_root)))
        if data_prefix is not None:
            dataset_cfg['data_prefix'] = data_prefix
        dataset = DATASETS.build(dataset_cfg)
        packed = dataset[0]
        inputs = packed['inputs']
        labels = packed['data_samples'].gt_sem_seg.data
        assert inputs.shape[0] == 3
        if loader is cfg.train_dataloader:
            assert inputs.shape[1] <= cfg.crop_size[0]
            assert inputs.shape[2] <= cfg.crop_size[1]
        assert set(labels.unique().tolist()) <= set(range(num_classes)) | {
            255
        }
