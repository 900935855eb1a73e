"""The dataset converters in tools/dataset_converters.

Inputs are made here (fake Oxford-IIIT Pet archives, a small NYUv2
``.mat`` file with random raw labels) or are the real samples in
shared/data. A failed conversion must leave no output folder behind.
"""
import importlib.util
import os
import os.path as osp
import tarfile

import h5py
import numpy as np
import pytest
from mmseg.registry import DATASETS
from PIL import Image
from scipy.io import loadmat, savemat

from mmseg_pat.datasets.nyu_seg import NYU13_CLASSES, NYU40_CLASSES

from conftest import PROJECT, SHARED_DATA


def _load_converter(name):
    path = osp.join(PROJECT, 'tools', 'dataset_converters', name + '.py')
    spec = importlib.util.spec_from_file_location(f'{name}_converter', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


oxford_pet = _load_converter('oxford_pet')
nyu = _load_converter('nyu')
cityscapes = _load_converter('cityscapes')

NYU_META = osp.join(SHARED_DATA, 'nyu', 'meta')
CITYSCAPES_GT = osp.join(SHARED_DATA, 'cityscapes', 'gtFine')


def _png(path):
    return np.array(Image.open(path))


def _files(root):
    """Paths of the files under ``root``, relative to it."""
    return {
        osp.relpath(osp.join(folder, file), root)
        for folder, _, files in os.walk(root) for file in files
    }


# ---------------------------------------------------------------- Oxford Pet

PET_TRAINVAL = ('Abyssinian_1', 'beagle_7')
PET_TEST = ('Bengal_3', )
PET_LIST_HEADER = '#Image CLASS-ID SPECIES BREED-ID\n#ID: 1:37 Class ids\n'


@pytest.fixture
def pet_downloads(tmp_path):
    """Fake official downloads: extracted folders and .tar.gz archives."""
    rng = np.random.default_rng(0)
    src = tmp_path / 'downloads'
    (src / 'images').mkdir(parents=True)
    (src / 'annotations' / 'trimaps').mkdir(parents=True)
    (src / 'annotations' / 'xmls').mkdir()
    lines = {}
    for split, names in (('trainval', PET_TRAINVAL), ('test', PET_TEST)):
        lines[split] = ''.join(f'{name} 1 1 1\n' for name in names)
        for k, name in enumerate(names):
            h, w = 12 + k, 20
            Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(
                src / 'images' / f'{name}.jpg')
            Image.fromarray(rng.integers(1, 4, (h, w), np.uint8)).save(
                src / 'annotations' / 'trimaps' / f'{name}.png')
    (src / 'annotations' / 'trainval.txt').write_text(lines['trainval'])
    (src / 'annotations' / 'test.txt').write_text(lines['test'])
    (src / 'annotations' / 'list.txt').write_text(
        PET_LIST_HEADER + lines['trainval'] + lines['test'])
    # What the real archives also hold and the converter leaves out.
    (src / 'images' / 'unlisted_1.jpg').write_bytes(
        (src / 'images' / 'beagle_7.jpg').read_bytes())
    (src / 'images' / 'Abyssinian_1.mat').write_bytes(b'MATLAB')
    (src / 'annotations' / 'trimaps' / '._Abyssinian_1.png').write_bytes(
        b'\x00\x05\x16\x07')
    (src / 'annotations' / 'xmls' / 'Abyssinian_1.xml').write_text('<a/>')
    (src / 'annotations' / 'README').write_text('readme')
    for top in ('images', 'annotations'):
        with tarfile.open(src / f'{top}.tar.gz', 'w:gz') as tar:
            tar.add(src / top, arcname=top)
    return src


def _pet_inputs(src, kind):
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
    expected = {f'images/{name}.jpg' for name in names}
    expected |= {f'annotations/trimaps/{name}.png' for name in names}
    expected |= {'annotations/list.txt', 'annotations/trainval.txt',
                 'annotations/test.txt'}
    assert _files(out) == expected
    for path in expected:
        assert (out / path).read_bytes() == (pet_downloads / path).read_bytes()
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


def _break_missing_trimap(src):
    os.remove(src / 'annotations' / 'trimaps' / 'beagle_7.png')
    return _pet_inputs(src, 'folder'), r'beagle_7'


def _break_size_mismatch(src):
    trimap = src / 'annotations' / 'trimaps' / 'Bengal_3.png'
    Image.new('L', (5, 5), 1).save(trimap)
    return _pet_inputs(src, 'folder'), r'Bengal_3 \(image \(20, 12\)'


def _break_garbage_archive(src):
    (src / 'images.tar.gz').write_bytes(b'not an archive' * 100)
    return _pet_inputs(src, 'archive'), 'not a readable tar archive'


def _break_truncated_archive(src):
    archive = src / 'annotations.tar.gz'
    archive.write_bytes(archive.read_bytes()[:300])
    return _pet_inputs(src, 'archive'), 'not a readable tar archive'


def _break_missing_list(src):
    os.remove(src / 'annotations' / 'test.txt')
    return _pet_inputs(src, 'folder'), r'has no annotations/test\.txt'


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

NYU_SHAPE = (12, 16)  # H, W
NYU_TRAIN, NYU_TEST = (1, 3, 4), (2, 5)  # 1-based, as in splits.mat
# Raw NYU classes whose 40- and 13-class names are known independently of
# the mapping files (raw name -> 40-class name -> 13-class name).
NAMED_RAW_CLASSES = (('wall', 'wall', 'wall'), ('floor', 'floor', 'floor'),
                     ('bed', 'bed', 'bed'), ('chair', 'chair', 'chair'),
                     ('ceiling', 'ceiling', 'ceiling'),
                     ('window', 'window', 'window'),
                     ('sofa', 'sofa', 'sofa'), ('table', 'table', 'table'),
                     ('picture', 'picture', 'picture'),
                     ('books', 'books', 'books'),
                     ('television', 'television', 'tv'),
                     ('book', 'otherprop', 'objects'))


def _raw_class_names():
    mat = loadmat(osp.join(NYU_META, 'classMapping40.mat'))
    return [str(name[0]) for name in mat['allClassName'][0]]


def _write_labeled_mat(path, frames, raw):
    """Store (N, H, W, 3) frames and (N, H, W) labels as MATLAB v7.3 does:
    h5py sees MATLAB's (H, W, 3, N) arrays with the axes reversed."""
    with h5py.File(path, 'w') as f:
        f['images'] = frames.transpose(0, 3, 2, 1)
        f['labels'] = raw.transpose(0, 2, 1).astype(np.uint16)


@pytest.fixture
def nyu_downloads(tmp_path):
    """A 5-frame labeled .mat, a splits.mat, and the real mapping files."""
    rng = np.random.default_rng(0)
    n = len(NYU_TRAIN) + len(NYU_TEST)
    frames = rng.integers(0, 256, (n, *NYU_SHAPE, 3), np.uint8)
    raw = rng.integers(0, 895, (n, *NYU_SHAPE))
    raw[0, 0, :3] = [0, 1, 894]  # unlabeled and the first and last class
    raw_names = _raw_class_names()
    for k, (name, _, _) in enumerate(NAMED_RAW_CLASSES):
        raw[1, 1, k] = raw_names.index(name) + 1
    src = tmp_path / 'downloads'
    meta = src / 'meta'
    meta.mkdir(parents=True)
    _write_labeled_mat(src / 'nyu_depth_v2_labeled.mat', frames, raw)
    savemat(
        meta / 'splits.mat',
        dict(
            trainNdxs=np.array(NYU_TRAIN, np.uint16)[:, None],
            testNdxs=np.array(NYU_TEST, np.uint16)[:, None]))
    for name in ('classMapping40.mat', 'class13Mapping.mat'):
        os.symlink(osp.join(NYU_META, name), meta / name)
    return dict(
        mat=str(src / 'nyu_depth_v2_labeled.mat'),
        meta=str(meta),
        frames=frames,
        raw=raw)


def _expected_nyu_labels(raw):
    """40- and 13-class labels of raw labels by per-pixel dict look-ups."""
    map40 = loadmat(osp.join(NYU_META, 'classMapping40.mat'))['mapClass']
    raw_to_40 = {0: 0}
    raw_to_40.update((k + 1, int(c)) for k, c in enumerate(map40.ravel()))
    mapping13 = loadmat(osp.join(NYU_META, 'class13Mapping.mat'))
    labels13 = mapping13['classMapping13']['labels13'][0, 0].ravel()
    c40_to_13 = {0: 0}
    c40_to_13.update((c + 1, int(c13)) for c, c13 in enumerate(labels13))
    label40 = np.array([raw_to_40[v] for v in raw.ravel().tolist()])
    label13 = np.array([c40_to_13[c] for c in label40.tolist()])
    return label40.reshape(raw.shape), label13.reshape(raw.shape)


def test_nyu_converter_maps_and_transposes(nyu_downloads, tmp_path):
    out = tmp_path / 'data' / 'nyu'
    counts = nyu.convert_nyu(nyu_downloads['mat'], nyu_downloads['meta'],
                             str(out))
    assert counts == dict(train=len(NYU_TRAIN), test=len(NYU_TEST))
    expected_files = set()
    for split, ndxs in (('train', NYU_TRAIN), ('test', NYU_TEST)):
        stems = [f'{i:04d}' for i in ndxs]
        assert (out / f'{split}.txt').read_text().split() == stems
        expected_files.add(f'{split}.txt')
        for stem, i in zip(stems, ndxs):
            for folder in ('image', 'label', 'label40'):
                expected_files.add(f'{folder}/{split}/{stem}.png')
            image = _png(out / 'image' / split / f'{stem}.png')
            assert np.array_equal(image, nyu_downloads['frames'][i - 1])
            raw = nyu_downloads['raw'][i - 1]
            label40, label13 = _expected_nyu_labels(raw)
            assert np.array_equal(
                _png(out / 'label40' / split / f'{stem}.png'), label40)
            assert np.array_equal(
                _png(out / 'label' / split / f'{stem}.png'), label13)
    assert _files(out) == expected_files
    named = _png(out / 'label' / 'test' / '0002.png')[1]
    named40 = _png(out / 'label40' / 'test' / '0002.png')[1]
    for k, (_, name40, name13) in enumerate(NAMED_RAW_CLASSES):
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
    assert len(dataset) == len(NYU_TEST)
    for i, ndx in enumerate(NYU_TEST):
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
    _write_labeled_mat(src['mat'], src['frames'], raw)
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


def test_cityscapes_train_id_table():
    assert sorted(cityscapes.ID_TO_TRAIN_ID.values()) == list(range(19))
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    train_ids = cityscapes.label_ids_to_train_ids(ids)
    assert train_ids[0, 7] == 0  # road
    assert train_ids[2, 1] == 18  # 33, bicycle
    assert train_ids[0, 0] == train_ids[15, 15] == 255


def test_cityscapes_train_ids_match_the_shipped_files():
    """The sample's labelTrainIds were made from its labelIds."""
    label_ids = sorted(
        file for file in _files(osp.dirname(CITYSCAPES_GT))
        if file.endswith(cityscapes.LABEL_IDS_SUFFIX))
    assert len(label_ids) > 10
    for file in label_ids:
        path = osp.join(osp.dirname(CITYSCAPES_GT), file)
        shipped = path.replace(cityscapes.LABEL_IDS_SUFFIX,
                               cityscapes.TRAIN_IDS_SUFFIX)
        assert np.array_equal(
            cityscapes.label_ids_to_train_ids(_png(path)), _png(shipped))


def _cityscapes_tree(root):
    """gtFine/val/frankfurt with the sample's val labelIds (a link)."""
    city = root / 'gtFine' / 'val' / 'frankfurt'
    city.mkdir(parents=True)
    name = 'frankfurt_000000_000294_gtFine_labelIds.png'
    os.symlink(osp.join(CITYSCAPES_GT, 'val', 'frankfurt', name), city / name)
    return city


def test_cityscapes_converter_writes_next_to_label_ids(tmp_path,
                                                       monkeypatch):
    city = _cityscapes_tree(tmp_path / 'cityscapes')
    stale = city / 'frankfurt_000000_000294_gtFine_labelTrainIds.png'
    stale.write_bytes(b'stale')
    monkeypatch.setattr('sys.argv',
                        ['cityscapes.py', str(tmp_path / 'cityscapes')])
    cityscapes.main()
    shipped = osp.join(CITYSCAPES_GT, 'val', 'frankfurt', stale.name)
    assert np.array_equal(_png(stale), _png(shipped))
    assert sorted(os.listdir(tmp_path / 'cityscapes')) == ['gtFine']


def test_cityscapes_converter_is_all_or_nothing(tmp_path):
    city = _cityscapes_tree(tmp_path / 'cityscapes')
    corrupt = city / 'frankfurt_000001_000000_gtFine_labelIds.png'
    corrupt.write_bytes(b'\x89PNG broken')
    colour = city / 'frankfurt_000002_000000_gtFine_labelIds.png'
    gt_dir = str(tmp_path / 'cityscapes' / 'gtFine')
    with pytest.raises(ValueError, match='000001_000000.*labelIds.png'):
        cityscapes.convert_cityscapes(gt_dir)
    corrupt.unlink()
    Image.new('RGB', (4, 4)).save(colour)
    with pytest.raises(ValueError, match='2-D uint8 map, got 3-D'):
        cityscapes.convert_cityscapes(gt_dir)
    assert _files(tmp_path / 'cityscapes') == {
        osp.relpath(colour, tmp_path / 'cityscapes'),
        'gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png'
    }
    assert os.listdir(tmp_path / 'cityscapes') == ['gtFine']
    with pytest.raises(FileNotFoundError, match='no \\*_gtFine_labelIds'):
        cityscapes.convert_cityscapes(str(tmp_path / 'empty'))
