"""Tiny Oxford-IIIT Pet, Cityscapes and NYUv2 downloads, generated.

Each ``make_*`` function writes small random files in the layout and the
encoding of the official download, so that the dataset classes, the
converters in ``tools/dataset_converters`` and the configs are tested on a
machine without the real data:

* Oxford-IIIT Pet (``images.tar.gz``, ``annotations.tar.gz`` from the VGG
  page, and the folders they extract to): ``images/<Breed>_<n>.jpg``,
  ``annotations/trimaps/<Breed>_<n>.png`` (8-bit grey, 1 pet, 2 background,
  3 border), ``annotations/{list,trainval,test}.txt``, and what the
  converter leaves out (head boxes, ``._*`` files, unlisted images).
* Cityscapes (``leftImg8bit_trainvaltest.zip``, ``gtFine_trainvaltest.zip``
  unzipped): ``leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png`` and
  ``gtFine/<split>/<city>/<frame>_gtFine_{labelIds,color,instanceIds}.png``
  and ``_polygons.json``; no ``labelTrainIds`` (the converter makes them).
* NYUv2: ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, i.e. HDF5, whose arrays
  h5py reads with the axes reversed) and the meta files of
  ankurhanda/nyuv2-meta-data, ``splits.mat``, ``classMapping40.mat`` and
  ``class13Mapping.mat``, as ``scipy.io.savemat`` writes MATLAB 5 files.
"""
import importlib.util
import json
import os
import os.path as osp
import sys
import tarfile
import time
from typing import Dict, Sequence, Tuple

import h5py
import numpy as np
from PIL import Image
from scipy.io import savemat

from mmseg_pat.datasets.nyu_seg import NYU13_CLASSES, NYU40_CLASSES

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_converter(name: str):
    """The module ``tools/dataset_converters/<name>.py``."""
    path = osp.join(PROJECT, 'tools', 'dataset_converters', name + '.py')
    spec = importlib.util.spec_from_file_location(f'{name}_converter', path)
    if spec.name in sys.modules:  # one module object per converter
        return sys.modules[spec.name]
    module = importlib.util.module_from_spec(spec)
    # registered, so that worker processes can unpickle its functions
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------ Oxford-IIIT Pet

# The 37 breeds; cat breeds are capitalised, dog breeds are not.
PET_BREEDS = (
    'Abyssinian', 'Bengal', 'Birman', 'Bombay', 'British_Shorthair',
    'Egyptian_Mau', 'Maine_Coon', 'Persian', 'Ragdoll', 'Russian_Blue',
    'Siamese', 'Sphynx', 'american_bulldog', 'american_pit_bull_terrier',
    'basset_hound', 'beagle', 'boxer', 'chihuahua', 'english_cocker_spaniel',
    'english_setter', 'german_shorthaired', 'great_pyrenees', 'havanese',
    'japanese_chin', 'keeshond', 'leonberger', 'miniature_pinscher',
    'newfoundland', 'pomeranian', 'pug', 'saint_bernard', 'samoyed',
    'scottish_terrier', 'shiba_inu', 'staffordshire_bull_terrier',
    'wheaten_terrier', 'yorkshire_terrier')
PET_LIST_HEADER = ('#Image CLASS-ID SPECIES BREED-ID\n'
                   '#ID: 1:37 Class ids\n'
                   '#SPECIES: 1:Cat 2:Dog\n'
                   '#BREED ID: 1-12:Cat 1-25:Dog\n'
                   '#All images with 1st letter as captial are cat images\n'
                   '#images with small first letter are dog images\n')
PET_TRAINVAL = ('Abyssinian_1', 'american_bulldog_10', 'Bengal_105',
                'beagle_7')
PET_TEST = ('Abyssinian_20', 'Bengal_3')
TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = 1, 2, 3


def pet_list_line(name: str) -> str:
    """``<name> <CLASS-ID> <SPECIES> <BREED-ID>`` as in the split lists:
    class ids follow the case-insensitive alphabetical order of the breeds,
    breed ids the same order within a species (1 cat, 2 dog)."""
    breed = name.rsplit('_', 1)[0]
    species = 1 if breed[0].isupper() else 2
    ordered = sorted(PET_BREEDS, key=str.lower)
    same_species = [b for b in ordered if (b[0].isupper()) == (species == 1)]
    return (f'{name} {ordered.index(breed) + 1} {species} '
            f'{same_species.index(breed) + 1}\n')


def _trimap(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An elliptic pet, a 2-pixel border band around it, background."""
    rows, cols = np.mgrid[:height, :width]
    cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
    ry, rx = rng.uniform(0.2, 0.35) * height, rng.uniform(0.2, 0.35) * width
    radius = np.hypot((rows - cy) / ry, (cols - cx) / rx)
    trimap = np.full((height, width), TRIMAP_BACKGROUND, np.uint8)
    trimap[radius < 1 + 2 / min(ry, rx)] = TRIMAP_BORDER
    trimap[radius < 1] = TRIMAP_PET
    return trimap


def make_oxford_pet_downloads(root: str,
                              trainval: Sequence[str] = PET_TRAINVAL,
                              test: Sequence[str] = PET_TEST,
                              seed: int = 0) -> Dict[str, Tuple[int, int]]:
    """Write ``images/``, ``annotations/`` and their ``.tar.gz`` archives.

    Args:
        root (str): Output folder.
        trainval, test (Sequence[str]): Image names of the two splits.
        seed (int): Seed of the random sizes and pixels.

    Returns:
        dict[str, tuple[int, int]]: The (height, width) of each image.
    """
    rng = np.random.default_rng(seed)
    images = osp.join(root, 'images')
    annotations = osp.join(root, 'annotations')
    for folder in (images, osp.join(annotations, 'trimaps'),
                   osp.join(annotations, 'xmls')):
        os.makedirs(folder)
    sizes = {}
    for name in (*trainval, *test):
        # Landscape or portrait, like the photographs.
        height, width = (36, 48) if rng.random() < 0.5 else (48, 40)
        trimap = _trimap(rng, height, width)
        colour = np.where((trimap == TRIMAP_PET)[..., None], [200, 120, 60],
                          [70, 90, 70])
        noise = rng.integers(-40, 40, (height, width, 3))
        pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(osp.join(images, f'{name}.jpg'))
        Image.fromarray(trimap).save(
            osp.join(annotations, 'trimaps', f'{name}.png'))
        with open(osp.join(annotations, 'xmls', f'{name}.xml'), 'w') as f:
            f.write(f'<annotation><filename>{name}.jpg</filename>'
                    '</annotation>\n')
        sizes[name] = (height, width)
    for split, names in (('trainval', trainval), ('test', test)):
        with open(osp.join(annotations, f'{split}.txt'), 'w') as f:
            f.writelines(pet_list_line(name) for name in names)
    with open(osp.join(annotations, 'list.txt'), 'w') as f:
        f.write(PET_LIST_HEADER)
        f.writelines(pet_list_line(name) for name in (*trainval, *test))
    # What the archives also hold: an image in no list, a few MATLAB files
    # among the images, macOS resource forks, a README.
    first = (*trainval, *test)[0]
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), np.uint8)).save(
        osp.join(images, 'Sphynx_999.jpg'))
    with open(osp.join(images, f'{first}.mat'), 'wb') as f:
        f.write(b'MATLAB 5.0 MAT-file')
    with open(osp.join(annotations, 'trimaps', f'._{first}.png'), 'wb') as f:
        f.write(b'\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ')
    with open(osp.join(annotations, 'README'), 'w') as f:
        f.write('OXFORD-IIIT PET Dataset\n')
    for top in ('images', 'annotations'):
        with tarfile.open(osp.join(root, f'{top}.tar.gz'), 'w:gz') as tar:
            tar.add(osp.join(root, top), arcname=top)
    return sizes


# ----------------------------------------------------------------- Cityscapes

# Cityscapes' label table (cityscapesscripts/helpers/labels.py): name, id
# stored in *_labelIds.png, train id (255: not evaluated). The license plate
# (id -1) is never stored in the label maps.
CITYSCAPES_LABELS = (
    ('unlabeled', 0, 255), ('ego vehicle', 1, 255),
    ('rectification border', 2, 255), ('out of roi', 3, 255),
    ('static', 4, 255), ('dynamic', 5, 255), ('ground', 6, 255),
    ('road', 7, 0), ('sidewalk', 8, 1), ('parking', 9, 255),
    ('rail track', 10, 255), ('building', 11, 2), ('wall', 12, 3),
    ('fence', 13, 4), ('guard rail', 14, 255), ('bridge', 15, 255),
    ('tunnel', 16, 255), ('pole', 17, 5), ('polegroup', 18, 255),
    ('traffic light', 19, 6), ('traffic sign', 20, 7),
    ('vegetation', 21, 8), ('terrain', 22, 9), ('sky', 23, 10),
    ('person', 24, 11), ('rider', 25, 12), ('car', 26, 13),
    ('truck', 27, 14), ('bus', 28, 15), ('caravan', 29, 255),
    ('trailer', 30, 255), ('train', 31, 16), ('motorcycle', 32, 17),
    ('bicycle', 33, 18))
_CITYSCAPES_ID = {name: label_id for name, label_id, _ in CITYSCAPES_LABELS}
# Classes whose instances get their own ids in *_instanceIds.png.
_CITYSCAPES_WITH_INSTANCES = range(24, 34)
CITYSCAPES_FRAMES = dict(
    train=('aachen_000000_000019', 'aachen_000001_000019',
           'bochum_000000_000313', 'bochum_000000_000600'),
    val=('frankfurt_000000_000294', 'frankfurt_000001_000538'))
CITYSCAPES_SIZE = (64, 128)  # H, W; the real frames are 1024 x 2048


def _street_scene(rng: np.random.Generator, height: int,
                  width: int) -> np.ndarray:
    """Label ids of a street seen from a car: sky, buildings, road, the
    car's bonnet, the out-of-roi frame, and a patch of every label id."""
    label = np.full((height, width), _CITYSCAPES_ID['sky'], np.uint8)
    label[height // 4:] = _CITYSCAPES_ID['building']
    label[height // 2:] = _CITYSCAPES_ID['road']
    label[height // 2:, :width // 8] = _CITYSCAPES_ID['sidewalk']
    for label_id in rng.permutation([i for _, i, _ in CITYSCAPES_LABELS]):
        h, w = rng.integers(2, height // 5), rng.integers(2, width // 5)
        y, x = rng.integers(0, height - h), rng.integers(0, width - w)
        label[y:y + h, x:x + w] = label_id
    label[-height // 10:] = _CITYSCAPES_ID['ego vehicle']
    label[[0, -1]] = label[:, [0, -1]] = _CITYSCAPES_ID['out of roi']
    return label


def make_cityscapes(root: str,
                    frames: Dict[str, Sequence[str]] = CITYSCAPES_FRAMES,
                    size: Tuple[int, int] = CITYSCAPES_SIZE,
                    seed: int = 0) -> None:
    """Write the unzipped ``leftImg8bit`` and ``gtFine`` archives.

    Args:
        root (str): Output folder, e.g. ``data/cityscapes``.
        frames (dict[str, Sequence[str]]): Frame names (``<city>_<seq>_
            <frame>``) of each split.
        size (tuple[int, int]): (height, width) of every frame.
        seed (int): Seed of the random scenes and pixels.
    """
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (256, 3), np.uint8)
    height, width = size
    for split, names in frames.items():
        for name in names:
            city = name.split('_')[0]
            image_dir = osp.join(root, 'leftImg8bit', split, city)
            gt_dir = osp.join(root, 'gtFine', split, city)
            os.makedirs(image_dir, exist_ok=True)
            os.makedirs(gt_dir, exist_ok=True)
            label = _street_scene(rng, height, width)
            noise = rng.integers(-30, 30, (height, width, 3))
            image = np.clip(palette[label] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(image).save(
                osp.join(image_dir, f'{name}_leftImg8bit.png'))
            gt = osp.join(gt_dir, f'{name}_gtFine_')
            Image.fromarray(label).save(gt + 'labelIds.png')
            colour = np.concatenate(
                [palette[label], np.full((height, width, 1), 255, np.uint8)],
                axis=-1)
            Image.fromarray(colour).save(gt + 'color.png')
            # Single instances: id * 1000 for classes with instances.
            instances = label.astype(np.uint16)
            has_instances = np.isin(label, _CITYSCAPES_WITH_INSTANCES)
            instances[has_instances] *= 1000
            Image.fromarray(instances).save(gt + 'instanceIds.png')
            with open(gt + 'polygons.json', 'w') as f:
                json.dump(
                    dict(imgHeight=height, imgWidth=width, objects=[]), f)


# ---------------------------------------------------------------------- NYUv2

NYU_SPLITS = dict(train=(1, 3, 4, 6), test=(2, 5))  # 1-based frame indices
NYU_SHAPE = (48, 64)  # H, W; the real frames are 480 x 640
NYU_RAW_CLASSES = 894
# Raw classes whose 40- and 13-class names are known independently of the
# mapping files: raw name -> 40-class name -> 13-class name.
NYU_NAMED_RAW_CLASSES = (
    ('wall', 'wall', 'wall'), ('floor', 'floor', 'floor'),
    ('bed', 'bed', 'bed'), ('chair', 'chair', 'chair'),
    ('ceiling', 'ceiling', 'ceiling'), ('window', 'window', 'window'),
    ('sofa', 'sofa', 'sofa'), ('table', 'table', 'table'),
    ('picture', 'picture', 'picture'), ('books', 'books', 'books'),
    ('television', 'television', 'tv'), ('book', 'otherprop', 'objects'))
_MATLAB_73_HEADER = ('MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: '
                     '{} HDF5 schema 1.00 .')


def write_labeled_mat(path: str, frames: np.ndarray,
                      raw: np.ndarray) -> None:
    """Write ``nyu_depth_v2_labeled.mat`` as MATLAB v7.3 does.

    MATLAB's ``images`` (H, W, 3, N) and ``labels`` (H, W, N) are stored
    column-major, so h5py sees them as (N, 3, W, H) and (N, W, H); the file
    starts with MATLAB's 512-byte text header (an HDF5 user block).

    Args:
        path (str): Output file.
        frames (np.ndarray): (N, H, W, 3) uint8 RGB frames.
        raw (np.ndarray): (N, H, W) raw class labels, 0 = unlabeled.
    """
    with h5py.File(path, 'w', userblock_size=512) as f:
        for key, data, matlab_class in (
            ('images', frames.transpose(0, 3, 2, 1), 'uint8'),
            ('labels', raw.transpose(0, 2, 1).astype(np.uint16), 'uint16'),
            ('depths', np.ones(raw.shape, np.float32).transpose(0, 2, 1),
             'single'),
        ):
            f[key] = data
            f[key].attrs['MATLAB_class'] = np.bytes_(matlab_class)
    header = _MATLAB_73_HEADER.format(time.strftime('%a %b %d %H:%M:%S %Y'))
    with open(path, 'r+b') as f:
        f.write(header.ljust(116).encode() + bytes(8) + b'\x00\x02IM')


def _cells(names: Sequence[str]) -> np.ndarray:
    """A 1 x n MATLAB cell array of strings."""
    cells = np.empty((1, len(names)), object)
    cells[0, :] = list(names)
    return cells


def write_nyu_meta(meta_dir: str, splits: Dict[str, Sequence[int]],
                   seed: int = 0) -> None:
    """Write ``splits.mat``, ``classMapping40.mat``, ``class13Mapping.mat``.

    The raw class names are made up except those of
    :data:`NYU_NAMED_RAW_CLASSES`, which map to their 40 and 13 classes;
    every other raw class maps to a random one of the 40 classes, every 40
    class without a 13-class namesake to furniture or objects. The 40-class
    names keep the file's spelling 'refridgerator'.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(meta_dir, exist_ok=True)
    savemat(
        osp.join(meta_dir, 'splits.mat'),
        dict(
            trainNdxs=np.array(splits['train'], np.float64)[:, None],
            testNdxs=np.array(splits['test'], np.float64)[:, None]))
    names40 = [
        'refridgerator' if name == 'refrigerator' else name
        for name in NYU40_CLASSES
    ]
    raw_names = [f'raw class {k}' for k in range(1, NYU_RAW_CLASSES + 1)]
    map_class = rng.integers(1, 41, NYU_RAW_CLASSES)
    positions = rng.choice(
        NYU_RAW_CLASSES, len(NYU_NAMED_RAW_CLASSES), replace=False)
    for k, (raw_name, name40, _) in zip(positions, NYU_NAMED_RAW_CLASSES):
        raw_names[k] = raw_name
        map_class[k] = names40.index(name40) + 1
    super_class = rng.integers(1, 5, 40)
    savemat(
        osp.join(meta_dir, 'classMapping40.mat'),
        dict(
            className=_cells(names40),
            mapClass=map_class[None].astype(np.float64),
            mapToNYUSuperClass=super_class[None].astype(np.float64),
            mapToNYUSuperClassMat=super_class == np.arange(1, 5)[:, None],
            allClassName=_cells(raw_names)))
    namesakes = {name: name for name in NYU13_CLASSES}
    namesakes.update(television='tv', otherprop='objects')
    labels13 = [
        NYU13_CLASSES.index(namesakes[name]) + 1 if name in namesakes else
        NYU13_CLASSES.index(rng.choice(['furniture', 'objects'])) + 1
        for name in NYU40_CLASSES
    ]
    savemat(
        osp.join(meta_dir, 'class13Mapping.mat'),
        dict(
            classMapping13=dict(
                labels13=np.array(labels13, np.float64)[None],
                classNames=_cells(NYU13_CLASSES))))


def make_nyu_downloads(root: str,
                       splits: Dict[str, Sequence[int]] = NYU_SPLITS,
                       shape: Tuple[int, int] = NYU_SHAPE,
                       seed: int = 0) -> dict:
    """Write ``nyu_depth_v2_labeled.mat`` and ``meta/*.mat``.

    The raw labels are 4 x 4 blocks of random raw classes, 15% of them
    unlabeled (0); frame 1 also holds the first and the last raw class.

    Args:
        root (str): Output folder.
        splits (dict[str, Sequence[int]]): 1-based frame indices of the
            train and test splits; the frames are 1..max.
        shape (tuple[int, int]): (height, width) of every frame.
        seed (int): Seed of the random pixels and mapping.

    Returns:
        dict: ``mat`` and ``meta`` (paths), ``frames`` (N, H, W, 3) and
        ``raw`` (N, H, W) as written.
    """
    rng = np.random.default_rng(seed)
    meta = osp.join(root, 'meta')
    write_nyu_meta(meta, splits, seed)
    num_frames = max(max(ndxs) for ndxs in splits.values())
    height, width = shape
    blocks = rng.integers(1, NYU_RAW_CLASSES + 1,
                          (num_frames, height // 4, width // 4))
    blocks[rng.random(blocks.shape) < 0.15] = 0  # unlabeled, as in NYUv2
    raw = blocks.repeat(4, axis=1).repeat(4, axis=2)
    raw[0, 0, :3] = [0, 1, NYU_RAW_CLASSES]
    frames = rng.integers(0, 256, (num_frames, height, width, 3), np.uint8)
    mat = osp.join(root, 'nyu_depth_v2_labeled.mat')
    write_labeled_mat(mat, frames, raw)
    return dict(mat=mat, meta=meta, frames=frames, raw=raw)
