"""Oxford-IIIT Pet, NYUv2 and Cityscapes through MMSeg's registry.

Each test runs on the generated data roots (``fake_datasets.py``, laid out
by the project's converters) and, where ``[real]`` is in its id, again on
the real samples. The expected labels are read from the raw PNG files with
PIL and mapped by hand here: trimap 1, 2, 3 -> pet 0, background 1, border
2; NYU 0 -> ignore (255), 1..13 -> 0..12; Cityscapes train ids as stored.
"""
import glob
import os.path as osp

import numpy as np
import pytest
from mmseg.registry import DATASETS
from PIL import Image

from mmseg_pat import load_config
from mmseg_pat.datasets.nyu_seg import NYU13_CLASSES, NYU40_CLASSES
from mmseg_pat.datasets.oxford_pet import OxfordPetDataset

from conftest import PROJECT, SAMPLES
from fake_datasets import NYU_SPLITS

LOAD = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
# Trimap values, as documented with the dataset.
TRIMAP_CLASSES = {1: 'pet', 2: 'background', 3: 'border'}


def _list_names(path):
    """First column of the non-comment lines of an Oxford-IIIT Pet list."""
    with open(path) as f:
        return [line.split(' ')[0] for line in f if line[0] not in '#\n']


def _png(path):
    return np.array(Image.open(path))


def _nyu_prefix(split, folder='label'):
    return dict(img_path=f'image/{split}', seg_map_path=f'{folder}/{split}')


@pytest.mark.parametrize('split', ['trainval', 'test'])
def test_oxford_pet_holds_the_split_list_in_file_name_order(
        oxford_pet_data, split):
    """The split's images, listed by file name as MMSeg's folder scans are
    (its confusion_matrix.py pairs the dataset with sorted predictions)."""
    ann_file = f'annotations/{split}.txt'
    dataset = DATASETS.build(
        dict(
            type='OxfordPetDataset',
            data_root=oxford_pet_data,
            ann_file=ann_file))
    names = _list_names(osp.join(oxford_pet_data, ann_file))
    assert isinstance(dataset, OxfordPetDataset)
    assert len(dataset) == len(names) > 0
    assert [
        osp.basename(dataset.get_data_info(i)['img_path'])
        for i in range(len(dataset))
    ] == sorted(name + '.jpg' for name in names)
    assert dataset.metainfo['classes'] == ('pet', 'background', 'border')


def test_oxford_pet_labels_are_trimaps_minus_one(oxford_pet_data):
    """Every image, pixel by pixel: trimap 1/2/3 -> 0/1/2, no ignore."""
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
                data_root=oxford_pet_data,
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


def test_nyu_labels_are_shifted_with_unlabeled_ignored(nyu_data):
    dataset = DATASETS.build(
        dict(
            type='NYUv2SegDataset',
            data_root=nyu_data,
            ann_file='test.txt',
            data_prefix=_nyu_prefix('test'),
            pipeline=LOAD))
    with open(osp.join(nyu_data, 'test.txt')) as f:
        stems = f.read().split()
    assert len(dataset) == len(stems) > 0
    assert dataset.metainfo['classes'] == NYU13_CLASSES
    values = set()
    for i, stem in enumerate(stems):
        sample = dataset[i]
        raw = _png(osp.join(nyu_data, 'label', 'test', stem + '.png'))
        expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
        assert sample['img'].shape == (*raw.shape, 3)
        assert np.array_equal(sample['gt_seg_map'], expected)
        values |= set(np.unique(sample['gt_seg_map']).tolist())
    assert 255 in values and values <= set(range(13)) | {255}
    # Without a split list the folder is listed: the same frames.
    listed = DATASETS.build(
        dict(
            type='NYUv2SegDataset',
            data_root=nyu_data,
            data_prefix=_nyu_prefix('test')))
    assert len(listed) == len(stems)


def test_nyu_default_split_and_40_classes(nyu_root):
    """The default folders are the train split's, ``label40/`` for
    NYUv2Seg40Dataset (the real sample has neither)."""
    train = DATASETS.build(dict(type='NYUv2SegDataset', data_root=nyu_root))
    assert [
        osp.basename(train.get_data_info(i)['img_path'])
        for i in range(len(train))
    ] == [f'{i:04d}.png' for i in NYU_SPLITS['train']]
    dataset = DATASETS.build(
        dict(
            type='NYUv2Seg40Dataset',
            data_root=nyu_root,
            ann_file='test.txt',
            data_prefix=_nyu_prefix('test', 'label40'),
            pipeline=[dict(type='LoadAnnotations')]))
    assert dataset.metainfo['classes'] == NYU40_CLASSES
    assert len(dataset) == len(NYU_SPLITS['test'])
    for i in range(len(dataset)):
        sample = dataset[i]
        raw = _png(sample['seg_map_path'])
        assert np.array_equal(sample['gt_seg_map'],
                              np.where(raw == 0, 255, raw.astype(int) - 1))
        assert raw.max() <= 40


@pytest.mark.real_samples('nyu')
def test_nyu_class_names_match_the_mapping_files():
    from scipy.io import loadmat
    meta = osp.join(SAMPLES, 'nyu', 'meta')
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


def test_cityscapes_loads_through_mmseg(cityscapes_data):
    val = DATASETS.build(
        dict(
            type='CityscapesDataset',
            data_root=cityscapes_data,
            data_prefix=dict(
                img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
            pipeline=LOAD))
    assert len(val.metainfo['classes']) == 19
    assert len(val) == len(
        glob.glob(osp.join(cityscapes_data, 'leftImg8bit/val/*/*.png')))
    sample = val[0]
    assert sample['seg_map_path'].endswith('_gtFine_labelTrainIds.png')
    assert sample['gt_seg_map'].shape == sample['img'].shape[:2]
    assert np.array_equal(sample['gt_seg_map'], _png(sample['seg_map_path']))
    # The real train frames are 2048 x 1024: read their labels only.
    train = DATASETS.build(
        dict(
            type='CityscapesDataset',
            data_root=cityscapes_data,
            data_prefix=dict(
                img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
            pipeline=[dict(type='LoadAnnotations')]))
    assert len(train) == len(
        glob.glob(osp.join(cityscapes_data, 'leftImg8bit/train/*/*.png')))
    values = set()
    for i in range(len(train)):
        values |= set(np.unique(train[i]['gt_seg_map']).tolist())
    assert 255 in values and values <= set(range(19)) | {255}


@pytest.mark.parametrize('cfg, root, message, converter', [
    (dict(type='OxfordPetDataset'), None, r"data root '.*missing' not found",
     'oxford_pet.py'),
    (dict(type='OxfordPetDataset', ann_file='annotations/val.txt'),
     'oxford_pet_root', r"split list '.*val\.txt' not found",
     'oxford_pet.py'),
    (dict(type='NYUv2SegDataset'), None, r"data root '.*missing' not found",
     'nyu.py'),
    (dict(type='NYUv2SegDataset', ann_file='val.txt'), 'nyu_root',
     r"split list '.*val\.txt' not found", 'nyu.py'),
    (dict(type='NYUv2Seg40Dataset', data_prefix=_nyu_prefix('val', 'label40')),
     'nyu_root', r"image folder '.*image/val' not found", 'nyu.py'),
])
def test_missing_data_is_explained(cfg, root, message, converter, tmp_path,
                                   request):
    data_root = (
        request.getfixturevalue(root) if root else str(tmp_path / 'missing'))
    with pytest.raises(FileNotFoundError, match=message) as error:
        DATASETS.build(dict(cfg, data_root=data_root))
    assert f'tools/dataset_converters/{converter}' in str(error.value)


@pytest.mark.parametrize('config, root, num_classes', [
    ('oxford_pet.py', 'oxford_pet_root', 3),
    ('nyu.py', 'nyu_root', 13),
    ('cityscapes.py', 'cityscapes_root', 19),
])
def test_base_configs_run_on_generated_data(config, root, num_classes,
                                            request):
    """The dataset bases with only the data root changed: folders, split
    lists and pipelines match the converters' layouts."""
    cfg = load_config(
        osp.join(PROJECT, 'configs', '_base_', 'datasets', config))
    assert cfg.val_evaluator.type == 'LongTailIoUMetric'
    assert cfg.val_evaluator.class_counts == 'train_set'
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        dataset = DATASETS.build(
            dict(loader.dataset, data_root=request.getfixturevalue(root)))
        assert len(dataset) > 0
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
