"""The dataset converters in tools/dataset_converters.

Inputs are generated in the official layouts (``fake_datasets.py``); where
``[real]`` is in a test's id, or the test is marked ``real_samples``, it
also runs on the real samples. A failed conversion must leave no output
folder behind.
"""
import os
import os.path as osp
import shutil

import h5py
import numpy as np
import pytest
from mmseg.registry import DATASETS
from PIL import Image
from scipy.io import loadmat, savemat

from mmseg_pat.datasets.nyu_seg import NYU13_CLASSES, NYU40_CLASSES

from conftest import SAMPLES
from fake_datasets import (CITYSCAPES_LABELS, NYU_NAMED_RAW_CLASSES, PET_TEST,
                           PET_TRAINVAL, load_converter, make_cityscapes,
                           make_nyu_downloads, make_oxford_pet_downloads,
                           write_labeled_mat)

oxford_pet = load_converter('oxford_pet')
nyu = load_converter('nyu')
cityscapes = load_converter('cityscapes')


def _png(path):
    return np.array(Image.open(path))


def _files(root):
    """Paths of the files under ``root``, relative to it."""
    return {
        osp.relpath(osp.join(folder, file), root)
        for folder, _, files in os.walk(root) for file in files
    }


# ---------------------------------------------------------------- Oxford Pet


@pytest.fixture
def pet_downloads(tmp_path):
    """Generated official downloads: extracted folders, .tar.gz archives."""
    src = tmp_path / 'downloads'
    sizes = make_oxford_pet_downloads(str(src))
    return src, sizes


def _pet_inputs(downloads, kind):
    src, _ = downloads
    if kind == 'archive':
        return str(src / 'images.tar.gz'), str(src / 'annotations.tar.gz')
    return str(src / 'images'), str(src / 'annotations')


@pytest.mark.parametrize('kind', ['archive', 'folder'])
def test_oxford_pet_converter_keeps_listed_pairs(pet_downloads, kind,
                                                 tmp_path):
    out = tmp_path / 'data' / 'oxford_pet'
    names = oxford_pet.convert_oxford_pet(*_pet_inputs(pet_downloads, kind),
                                          str(out))
    assert names == list(PET_TRAINVAL + PET_TEST)
    _check_pet_output(out, pet_downloads[0], names)
    assert os.listdir(tmp_path / 'data') == ['oxford_pet']
    dataset = DATASETS.build(
        dict(
            type='OxfordPetDataset',
            data_root=str(out),
            ann_file='annotations/test.txt',
            pipeline=[dict(type='LoadAnnotations')]))
    assert len(dataset) == len(PET_TEST)
    trimap = _png(out / 'annotations' / 'trimaps' / f'{PET_TEST[0]}.png')
    assert np.array_equal(dataset[0]['gt_seg_map'], trimap - 1)


def _check_pet_output(out, src, names):
    """Exactly the listed pairs and the three lists, copied unchanged."""
    expected = {f'images/{name}.jpg' for name in names}
    expected |= {f'annotations/trimaps/{name}.png' for name in names}
    expected |= {'annotations/list.txt', 'annotations/trainval.txt',
                 'annotations/test.txt'}
    assert _files(out) == expected
    for path in expected:
        with open(osp.join(src, path), 'rb') as f:
            assert (out / path).read_bytes() == f.read(), path


@pytest.mark.real_samples('oxford_pet')
def test_oxford_pet_converter_on_the_real_sample(tmp_path):
    """The sample's folders (real lists and files) go through unchanged."""
    src = osp.join(SAMPLES, 'oxford_pet')
    out = tmp_path / 'oxford_pet'
    names = oxford_pet.convert_oxford_pet(
        osp.join(src, 'images'), osp.join(src, 'annotations'), str(out))
    listed = [
        name for split in ('trainval', 'test')
        for name in oxford_pet.split_names(
            (out / 'annotations' / f'{split}.txt').read_text().splitlines())
    ]
    assert names == listed and len(names) > 100
    _check_pet_output(out, src, names)


def _break_missing_trimap(downloads):
    src, _ = downloads
    os.remove(src / 'annotations' / 'trimaps' / 'beagle_7.png')
    return _pet_inputs(downloads, 'folder'), r'beagle_7'


def _break_size_mismatch(downloads):
    src, sizes = downloads
    trimap = src / 'annotations' / 'trimaps' / 'Bengal_3.png'
    Image.new('L', (5, 5), 1).save(trimap)
    height, width = sizes['Bengal_3']
    return (_pet_inputs(downloads, 'folder'),
            rf'Bengal_3 \(image \({width}, {height}\), trimap \(5, 5\)')


def _break_garbage_archive(downloads):
    (downloads[0] / 'images.tar.gz').write_bytes(b'not an archive' * 100)
    return _pet_inputs(downloads, 'archive'), 'not a readable tar archive'


def _break_truncated_archive(downloads):
    archive = downloads[0] / 'annotations.tar.gz'
    archive.write_bytes(archive.read_bytes()[:300])
    return _pet_inputs(downloads, 'archive'), 'not a readable tar archive'


def _break_missing_list(downloads):
    os.remove(downloads[0] / 'annotations' / 'test.txt')
    return _pet_inputs(downloads, 'folder'), r'has no annotations/test\.txt'


@pytest.mark.parametrize('break_input', [
    _break_missing_trimap, _break_size_mismatch, _break_garbage_archive,
    _break_truncated_archive, _break_missing_list
])
def test_oxford_pet_converter_rejects_bad_input(pet_downloads, break_input,
                                                tmp_path):
    inputs, message = break_input(pet_downloads)
    with pytest.raises(ValueError, match=message):
        oxford_pet.convert_oxford_pet(*inputs, str(tmp_path / 'out' / 'pet'))
    assert os.listdir(tmp_path / 'out') == []


def test_oxford_pet_converter_missing_input_and_existing_output(
        pet_downloads, tmp_path):
    images, annotations = _pet_inputs(pet_downloads, 'archive')
    out = tmp_path / 'out' / 'pet'
    with pytest.raises(FileNotFoundError, match='annotations.tar.gz'):
        oxford_pet.convert_oxford_pet(images, str(tmp_path / 'none.tar.gz'),
                                      str(out))
    assert os.listdir(tmp_path / 'out') == []
    out.mkdir()
    (out / 'mine.txt').write_text('keep')
    with pytest.raises(FileExistsError, match='--overwrite'):
        oxford_pet.convert_oxford_pet(images, annotations, str(out))
    assert _files(out) == {'mine.txt'}
    oxford_pet.convert_oxford_pet(images, annotations, str(out), True)
    assert 'mine.txt' not in _files(out)
    assert 'images/Bengal_3.jpg' in _files(out)


# ---------------------------------------------------------------------- NYU

NYU_SPLITS = dict(train=(1, 3, 4), test=(2, 5))  # 1-based, as in splits.mat
NYU_SHAPE = (12, 16)  # H, W


def _raw_class_names(meta):
    mat = loadmat(osp.join(meta, 'classMapping40.mat'))
    return [str(name[0]) for name in mat['allClassName'][0]]


def _place_named_classes(src):
    """Write every raw class of NYU_NAMED_RAW_CLASSES, as the meta files
    number it, into the first row of frame 2."""
    raw_names = _raw_class_names(src['meta'])
    for k, (name, _, _) in enumerate(NYU_NAMED_RAW_CLASSES):
        src['raw'][1, 0, k] = raw_names.index(name) + 1
    write_labeled_mat(src['mat'], src['frames'], src['raw'])


@pytest.fixture
def nyu_downloads(tmp_path):
    """A generated 5-frame labeled .mat, splits.mat and mapping files."""
    return make_nyu_downloads(
        str(tmp_path / 'downloads'), splits=NYU_SPLITS, shape=NYU_SHAPE)


@pytest.fixture(params=[
    'generated',
    pytest.param('real', marks=pytest.mark.real_samples('nyu'))
])
def nyu_downloads_any_mapping(request, tmp_path):
    """The generated downloads with the generated mapping files, then with
    the real ones of the sample (classMapping40.mat, class13Mapping.mat)."""
    src = make_nyu_downloads(
        str(tmp_path / 'downloads'), splits=NYU_SPLITS, shape=NYU_SHAPE)
    if request.param == 'real':
        for name in ('classMapping40.mat', 'class13Mapping.mat'):
            os.remove(osp.join(src['meta'], name))
            os.symlink(
                osp.join(SAMPLES, 'nyu', 'meta', name),
                osp.join(src['meta'], name))
    return src


def _expected_nyu_labels(raw, meta):
    """40- and 13-class labels of raw labels by per-pixel dict look-ups."""
    map40 = loadmat(osp.join(meta, 'classMapping40.mat'))['mapClass']
    raw_to_40 = {0: 0}
    raw_to_40.update((k + 1, int(c)) for k, c in enumerate(map40.ravel()))
    mapping13 = loadmat(osp.join(meta, 'class13Mapping.mat'))
    labels13 = mapping13['classMapping13']['labels13'][0, 0].ravel()
    c40_to_13 = {0: 0}
    c40_to_13.update((c + 1, int(c13)) for c, c13 in enumerate(labels13))
    label40 = np.array([raw_to_40[v] for v in raw.ravel().tolist()])
    label13 = np.array([c40_to_13[c] for c in label40.tolist()])
    return label40.reshape(raw.shape), label13.reshape(raw.shape)


def test_nyu_labeled_mat_reads_as_the_real_one(nyu_downloads):
    """h5py sees MATLAB's (H, W, 3, N) and (H, W, N) arrays reversed."""
    with h5py.File(nyu_downloads['mat'], 'r') as f:
        assert f['images'].shape == (5, 3, NYU_SHAPE[1], NYU_SHAPE[0])
        assert f['labels'].shape == (5, NYU_SHAPE[1], NYU_SHAPE[0])
        assert f['images'].dtype == np.uint8
        assert f['labels'].dtype == np.uint16
    with open(nyu_downloads['mat'], 'rb') as f:
        assert f.read(19) == b'MATLAB 7.3 MAT-file'


def test_nyu_converter_maps_and_transposes(nyu_downloads_any_mapping,
                                           tmp_path):
    src = nyu_downloads_any_mapping
    _place_named_classes(src)
    out = tmp_path / 'data' / 'nyu'
    counts = nyu.convert_nyu(src['mat'], src['meta'], str(out))
    assert counts == {split: len(n) for split, n in NYU_SPLITS.items()}
    expected_files = set()
    for split, ndxs in NYU_SPLITS.items():
        stems = [f'{i:04d}' for i in ndxs]
        assert (out / f'{split}.txt').read_text().split() == stems
        expected_files.add(f'{split}.txt')
        for stem, i in zip(stems, ndxs):
            for folder in ('image', 'label', 'label40'):
                expected_files.add(f'{folder}/{split}/{stem}.png')
            image = _png(out / 'image' / split / f'{stem}.png')
            assert np.array_equal(image, src['frames'][i - 1])
            label40, label13 = _expected_nyu_labels(src['raw'][i - 1],
                                                    src['meta'])
            assert np.array_equal(
                _png(out / 'label40' / split / f'{stem}.png'), label40)
            assert np.array_equal(
                _png(out / 'label' / split / f'{stem}.png'), label13)
    assert _files(out) == expected_files
    named = _png(out / 'label' / 'test' / '0002.png')[0]
    named40 = _png(out / 'label40' / 'test' / '0002.png')[0]
    for k, (_, name40, name13) in enumerate(NYU_NAMED_RAW_CLASSES):
        assert NYU40_CLASSES[named40[k] - 1] == name40
        assert NYU13_CLASSES[named[k] - 1] == name13


@pytest.mark.parametrize('dataset_type, folder',
                         [('NYUv2SegDataset', 'label'),
                          ('NYUv2Seg40Dataset', 'label40')])
def test_nyu_converter_output_loads(nyu_downloads, tmp_path, dataset_type,
                                    folder):
    out = tmp_path / 'nyu'
    nyu.convert_nyu(nyu_downloads['mat'], nyu_downloads['meta'], str(out))
    dataset = DATASETS.build(
        dict(
            type=dataset_type,
            data_root=str(out),
            ann_file='test.txt',
            data_prefix=dict(
                img_path='image/test', seg_map_path=f'{folder}/test'),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations')
            ]))
    assert len(dataset) == len(NYU_SPLITS['test'])
    for i, ndx in enumerate(NYU_SPLITS['test']):
        sample = dataset[i]
        label = _png(out / folder / 'test' / f'{ndx:04d}.png')
        assert sample['img'].shape == (*NYU_SHAPE, 3)
        assert np.array_equal(sample['gt_seg_map'],
                              np.where(label == 0, 255, label - 1))


def _nyu_garbage_mat(src):
    with open(src['mat'], 'wb') as f:
        f.write(b'MATLAB 5.0 MAT-file, not HDF5' * 40)
    return ValueError, 'not a readable MATLAB v7.3'


def _nyu_label_out_of_range(src):
    raw = src['raw'].copy()
    raw[-1, -1, -1] = 900  # the last frame: fails after others are written
    write_labeled_mat(src['mat'], src['frames'], raw)
    return ValueError, 'frame 0005 has raw label 900'


def _nyu_split_out_of_range(src):
    savemat(
        osp.join(src['meta'], 'splits.mat'),
        dict(trainNdxs=np.array([[1], [6]]), testNdxs=np.array([[2]])))
    return ValueError, r'trainNdxs has indices 1\.\.6 .* frames 1\.\.5'


def _nyu_missing_mapping(src):
    os.remove(osp.join(src['meta'], 'class13Mapping.mat'))
    return FileNotFoundError, 'class13Mapping.mat'


def _nyu_corrupt_mapping(src):
    path = osp.join(src['meta'], 'classMapping40.mat')
    os.remove(path)
    with open(path, 'wb') as f:
        f.write(b'\x00' * 200)
    return ValueError, 'classMapping40.mat'


def _nyu_missing_labels(src):
    with h5py.File(src['mat'], 'a') as f:
        del f['labels']
    return ValueError, "has no 'labels'"


@pytest.mark.parametrize('break_input', [
    _nyu_garbage_mat, _nyu_label_out_of_range, _nyu_split_out_of_range,
    _nyu_missing_mapping, _nyu_corrupt_mapping, _nyu_missing_labels
])
def test_nyu_converter_rejects_bad_input(nyu_downloads, break_input,
                                         tmp_path):
    error, message = break_input(nyu_downloads)
    with pytest.raises(error, match=message):
        nyu.convert_nyu(nyu_downloads['mat'], nyu_downloads['meta'],
                        str(tmp_path / 'out' / 'nyu'))
    out_parent = tmp_path / 'out'
    assert not out_parent.exists() or os.listdir(out_parent) == []


def test_nyu_converter_cli_reports_errors(nyu_downloads, tmp_path,
                                          monkeypatch, capsys):
    out = tmp_path / 'out' / 'nyu'
    monkeypatch.setattr('sys.argv', [
        'nyu.py',
        str(tmp_path / 'absent.mat'), nyu_downloads['meta'], '-o',
        str(out)
    ])
    with pytest.raises(SystemExit, match=r"error: '.*absent\.mat' not found"):
        nyu.main()
    monkeypatch.setattr(
        'sys.argv',
        ['nyu.py', nyu_downloads['mat'], nyu_downloads['meta'], '-o',
         str(out)])
    nyu.main()
    assert 'frames written' in capsys.readouterr().out
    assert (out / 'label40' / 'test' / '0005.png').is_file()


# ---------------------------------------------------------------- Cityscapes


# Label id -> train id, from the label table's names (an oracle written
# apart from the converter's table).
TRAIN_ID_OF = {label_id: train_id for _, label_id, train_id in
               CITYSCAPES_LABELS}


def test_cityscapes_train_id_table():
    assert cityscapes.ID_TO_TRAIN_ID == {
        i: t
        for i, t in TRAIN_ID_OF.items() if t != 255
    }
    assert sorted(cityscapes.ID_TO_TRAIN_ID.values()) == list(range(19))
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    train_ids = cityscapes.label_ids_to_train_ids(ids)
    assert train_ids[0, 7] == 0  # road
    assert train_ids[2, 1] == 18  # 33, bicycle
    assert train_ids[0, 0] == train_ids[15, 15] == 255


def _expected_train_ids(label_ids_path):
    """Train ids of a labelIds file by per-pixel dict look-ups."""
    label_ids = _png(label_ids_path)
    return np.array([TRAIN_ID_OF.get(v, 255) for v in label_ids.ravel()],
                    np.uint8).reshape(label_ids.shape)


def test_cityscapes_converter_writes_next_to_label_ids(tmp_path,
                                                       monkeypatch, capsys):
    root = tmp_path / 'cityscapes'
    make_cityscapes(str(root))
    before = _files(root)
    label_ids = sorted(
        f for f in before if f.endswith(cityscapes.LABEL_IDS_SUFFIX))
    stale = root / label_ids[0].replace(cityscapes.LABEL_IDS_SUFFIX,
                                        cityscapes.TRAIN_IDS_SUFFIX)
    stale.write_bytes(b'stale')
    monkeypatch.setattr('sys.argv', ['cityscapes.py', str(root)])
    cityscapes.main()
    assert f'{len(label_ids)} *' in capsys.readouterr().out
    written = {
        f.replace(cityscapes.LABEL_IDS_SUFFIX, cityscapes.TRAIN_IDS_SUFFIX)
        for f in label_ids
    }
    assert _files(root) == before | written
    for file in label_ids:
        train_ids = _png(
            root / file.replace(cityscapes.LABEL_IDS_SUFFIX,
                                cityscapes.TRAIN_IDS_SUFFIX))
        assert train_ids.dtype == np.uint8
        assert np.array_equal(train_ids, _expected_train_ids(root / file))
    assert sorted(os.listdir(root)) == ['gtFine', 'leftImg8bit']


@pytest.mark.real_samples('cityscapes')
def test_cityscapes_train_ids_match_the_shipped_files():
    """The sample's labelTrainIds were made from its labelIds."""
    root = osp.join(SAMPLES, 'cityscapes')
    label_ids = sorted(
        file for file in _files(root)
        if file.endswith(cityscapes.LABEL_IDS_SUFFIX))
    assert len(label_ids) > 10
    for file in label_ids:
        path = osp.join(root, file)
        shipped = path.replace(cityscapes.LABEL_IDS_SUFFIX,
                               cityscapes.TRAIN_IDS_SUFFIX)
        assert np.array_equal(
            cityscapes.label_ids_to_train_ids(_png(path)), _png(shipped))


def test_cityscapes_converter_is_all_or_nothing(tmp_path):
    root = tmp_path / 'cityscapes'
    make_cityscapes(str(root), frames=dict(val=('frankfurt_000000_000294', )))
    shutil.rmtree(root / 'leftImg8bit')
    before = _files(root)
    city = root / 'gtFine' / 'val' / 'frankfurt'
    corrupt = city / 'frankfurt_000001_000000_gtFine_labelIds.png'
    corrupt.write_bytes(b'\x89PNG broken')
    colour = city / 'frankfurt_000002_000000_gtFine_labelIds.png'
    gt_dir = str(root / 'gtFine')
    with pytest.raises(ValueError, match='000001_000000.*labelIds.png'):
        cityscapes.convert_cityscapes(gt_dir)
    corrupt.unlink()
    Image.new('RGB', (4, 4)).save(colour)
    with pytest.raises(ValueError, match='2-D uint8 map, got 3-D'):
        cityscapes.convert_cityscapes(gt_dir)
    assert _files(root) == before | {osp.relpath(colour, root)}
    assert os.listdir(root) == ['gtFine']
    with pytest.raises(FileNotFoundError, match='no \\*_gtFine_labelIds'):
        cityscapes.convert_cityscapes(str(tmp_path / 'empty'))
