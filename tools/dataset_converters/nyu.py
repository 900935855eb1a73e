"""Convert the NYUv2 labeled set to the layout ``NYUv2SegDataset`` reads.

Inputs:

- ``nyu_depth_v2_labeled.mat`` (2.8 GB) from
  https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html: a MATLAB v7.3
  (HDF5) file whose ``images`` (480 x 640 x 3 x 1449) and ``labels``
  (480 x 640 x 1449, 0 = unlabeled, else one of 894 raw classes) h5py reads
  with the axes reversed.
- A folder with ``splits.mat`` (1-based ``trainNdxs``, ``testNdxs``),
  ``classMapping40.mat`` (``mapClass``: raw class -> 1..40) and
  ``class13Mapping.mat`` (``classMapping13.labels13``: 40 classes ->
  1..13), e.g. a clone of https://github.com/ankurhanda/nyuv2-meta-data.

Usage::

    python tools/dataset_converters/nyu.py \\
        nyu_depth_v2_labeled.mat nyuv2-meta-data -o data/nyu

Output (``<idx>`` = 1-based, 4-digit frame index, as in ``splits.mat``)::

    image/{train,test}/<idx>.png     RGB, 640 x 480
    label/{train,test}/<idx>.png     13 classes, 0 = unlabeled
    label40/{train,test}/<idx>.png   40 classes, 0 = unlabeled
    {train,test}.txt                 the stems of each split

The output is written to a temporary folder next to it and renamed into
place, so a failed run leaves nothing behind.
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile
from typing import Dict, Tuple

import numpy as np
from PIL import Image

try:
    import h5py
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError
except ImportError as err:
    raise ImportError('The NYUv2 converter needs h5py and scipy: '
                      '`pip install h5py scipy`') from err

SPLITS = dict(train='trainNdxs', test='testNdxs')
META_FILES = ('splits.mat', 'classMapping40.mat', 'class13Mapping.mat')


def _load_mat(path: str) -> dict:
    """``scipy.io.loadmat`` with errors that name the file."""
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path!r} not found; it is in '
            'https://github.com/ankurhanda/nyuv2-meta-data')
    try:
        return loadmat(path)
    except (MatReadError, OSError, ValueError) as err:
        raise ValueError(f'{path!r} is not a readable .mat file ({err}); '
                         'download it again') from err


def _field(mat: dict, key: str, path: str) -> np.ndarray:
    """The array ``mat[key]``, or a ValueError naming the file."""
    if key not in mat:
        raise ValueError(f'{path!r} has no {key!r}; is it the right file?')
    return mat[key]


def load_label_tables(meta_dir: str) -> Tuple[np.ndarray, np.ndarray]:
    """Lookup tables from the raw labels to the 40 and the 13 classes.

    Args:
        meta_dir (str): Folder with ``classMapping40.mat`` and
            ``class13Mapping.mat``.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(to40, to13)``, uint8 arrays indexed
        by the raw label (0 = unlabeled, 1..894) that give 0 = unlabeled or
        the class (1..40, 1..13).
    """
    path40 = osp.join(meta_dir, 'classMapping40.mat')
    map40 = _field(_load_mat(path40), 'mapClass', path40).ravel()
    path13 = osp.join(meta_dir, 'class13Mapping.mat')
    struct13 = _field(_load_mat(path13), 'classMapping13', path13)
    if 'labels13' not in (struct13.dtype.names or ()):
        raise ValueError(f'{path13!r}: classMapping13 has no labels13 field; '
                         'is it the right file?')
    map13 = struct13['labels13'][0, 0].ravel()
    if map13.size != 40 or not 1 <= map40.min() <= map40.max() <= 40:
        raise ValueError(
            f'{path40!r} / {path13!r} do not map raw classes to 1..40 and '
            f'40 classes to 13 ({map40.size} raw classes with values '
            f'{map40.min()}..{map40.max()}, {map13.size} 40-class entries)')
    to40 = np.concatenate([[0], map40]).astype(np.uint8)
    to13 = np.concatenate([[0], map13]).astype(np.uint8)[to40]
    return to40, to13


def load_splits(meta_dir: str, num_frames: int) -> Dict[str, np.ndarray]:
    """0-based frame indices of each split (train, test).

    Args:
        meta_dir (str): Folder with ``splits.mat``.
        num_frames (int): Number of frames of the labeled set.
    """
    path = osp.join(meta_dir, 'splits.mat')
    mat = _load_mat(path)
    splits = {}
    for split, key in SPLITS.items():
        ndxs = _field(mat, key, path).ravel().astype(np.int64)
        if ndxs.size and not 1 <= ndxs.min() <= ndxs.max() <= num_frames:
            raise ValueError(
                f'{path!r}: {key} has indices {ndxs.min()}..{ndxs.max()} but '
                f'the labeled set has frames 1..{num_frames}')
        splits[split] = ndxs - 1
    return splits


def convert_nyu(labeled_mat: str,
                meta_dir: str,
                out_dir: str,
                overwrite: bool = False) -> Dict[str, int]:
    """Write the dataset under ``out_dir``.

    Args:
        labeled_mat (str): ``nyu_depth_v2_labeled.mat``.
        meta_dir (str): Folder with ``splits.mat``, ``classMapping40.mat``
            and ``class13Mapping.mat``.
        out_dir (str): Output folder, the dataset's ``data_root``.
        overwrite (bool): Replace an existing, non-empty ``out_dir``.
            Default: ``False``.

    Returns:
        dict[str, int]: Number of frames written per split.

    Raises:
        FileNotFoundError: If an input is missing.
        FileExistsError: If ``out_dir`` is not empty and not ``overwrite``.
        ValueError: If an input is corrupt or inconsistent.
    """
    if not osp.isfile(labeled_mat):
        raise FileNotFoundError(
            f'{labeled_mat!r} not found; download nyu_depth_v2_labeled.mat '
            'from https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html')
    if osp.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(
            f'{out_dir!r} is not empty; remove it or pass --overwrite')
    to40, to13 = load_label_tables(meta_dir)
    try:
        mat = h5py.File(labeled_mat, 'r')
    except OSError as err:
        raise ValueError(
            f'{labeled_mat!r} is not a readable MATLAB v7.3 (HDF5) file '
            f'({err}); download nyu_depth_v2_labeled.mat again') from err
    parent = osp.dirname(osp.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(
        prefix=f'.{osp.basename(osp.abspath(out_dir))}-', dir=parent)
    try:
        with mat:
            images = _field(mat, 'images', labeled_mat)
            labels = _field(mat, 'labels', labeled_mat)
            # h5py reverses MATLAB's axes: (N, 3, W, H) and (N, W, H).
            if (images.ndim != 4 or images.shape[1] != 3
                    or labels.shape != images.shape[:1] + images.shape[2:]):
                raise ValueError(
                    f'{labeled_mat!r}: images {images.shape} and labels '
                    f'{labels.shape} are not (N, 3, W, H) and (N, W, H)')
            splits = load_splits(meta_dir, len(images))
            for split, frames in splits.items():
                for folder in ('image', 'label', 'label40'):
                    os.makedirs(osp.join(tmp, folder, split))
                stems = [f'{i + 1:04d}' for i in frames]
                for i, stem in zip(frames, stems):
                    raw = labels[i].T
                    if raw.max() >= len(to40):
                        raise ValueError(
                            f'{labeled_mat!r}: frame {stem} has raw label '
                            f'{raw.max()}, the mapping covers 0..'
                            f'{len(to40) - 1}')
                    png = f'{split}/{stem}.png'
                    Image.fromarray(images[i].transpose(2, 1, 0)).save(
                        osp.join(tmp, 'image', png))
                    Image.fromarray(to13[raw]).save(
                        osp.join(tmp, 'label', png))
                    Image.fromarray(to40[raw]).save(
                        osp.join(tmp, 'label40', png))
                with open(osp.join(tmp, f'{split}.txt'), 'w') as f:
                    f.writelines(stem + '\n' for stem in stems)
        if osp.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {split: len(frames) for split, frames in splits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description='Convert the NYUv2 labeled set for NYUv2SegDataset.')
    parser.add_argument('labeled_mat', help='nyu_depth_v2_labeled.mat')
    parser.add_argument(
        'meta_dir',
        help='folder with ' + ', '.join(META_FILES) +
        ' (ankurhanda/nyuv2-meta-data)')
    parser.add_argument(
        '-o',
        '--out-dir',
        default='data/nyu',
        help='output folder (default: data/nyu)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace a non-empty output folder')
    args = parser.parse_args()
    try:
        counts = convert_nyu(args.labeled_mat, args.meta_dir, args.out_dir,
                             args.overwrite)
    except (OSError, ValueError) as err:
        sys.exit(f'error: {err}')
    print(f'{counts} frames written to {args.out_dir}')


if __name__ == '__main__':
    main()
