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

``--nproc N`` writes the frames with N processes. The output is written to a
temporary folder next to it and renamed into place, so a failed or
interrupted run (Ctrl-C, SIGTERM) leaves nothing behind.
"""
import argparse
import os
import os.path as osp
import sys
from functools import partial
from typing import Dict, Optional, Tuple

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image

from mmseg_pat.utils.atomic import atomic_folder

try:
    import h5py
    from scipy.io import loadmat
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
    # On a file cut short, scipy's reader raises anything from MatReadError
    # to IndexError or TypeError.
    except Exception as err:
        raise ValueError(
            f'{path!r} is not a readable .mat file ({type(err).__name__}: '
            f'{err}); is it cut short? Download it again') from err


def _field(mat: dict, key: str, path: str) -> np.ndarray:
    """The array ``mat[key]``, or a ValueError naming the file."""
    if key not in mat:
        raise ValueError(f'{path!r} has no {key!r}; is it the right file, '
                         'and complete?')
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


def _check_labeled_mat(labeled_mat: str) -> int:
    """Number of frames of ``nyu_depth_v2_labeled.mat``; ValueError if its
    ``images`` and ``labels`` are not what the converter reads."""
    try:
        mat = h5py.File(labeled_mat, 'r')
    except OSError as err:
        raise ValueError(
            f'{labeled_mat!r} is not a readable MATLAB v7.3 (HDF5) file '
            f'({err}); download nyu_depth_v2_labeled.mat again') from err
    with mat:
        images = _field(mat, 'images', labeled_mat)
        labels = _field(mat, 'labels', labeled_mat)
        # h5py reverses MATLAB's axes: (N, 3, W, H) and (N, W, H).
        if (images.ndim != 4 or images.shape[1] != 3
                or labels.shape != images.shape[:1] + images.shape[2:]):
            raise ValueError(
                f'{labeled_mat!r}: images {images.shape} and labels '
                f'{labels.shape} are not (N, 3, W, H) and (N, W, H)')
        return len(images)


def _write_frame(labeled_mat: str, to40: np.ndarray, to13: np.ndarray,
                 out_dir: str, frame: Tuple[int, str]) -> Optional[str]:
    """Write the image and labels of one frame; say what is wrong with it,
    or None.

    Args:
        labeled_mat (str): ``nyu_depth_v2_labeled.mat``, opened here: an
            HDF5 file is not shared between processes.
        to40, to13 (np.ndarray): Tables of :func:`load_label_tables`.
        out_dir (str): Output folder, with the split folders made.
        frame (tuple[int, str]): 0-based index in ``labeled_mat``, and the
            output file, ``<split>/<idx>.png``.
    """
    i, png = frame
    try:
        with h5py.File(labeled_mat, 'r') as mat:
            image = mat['images'][i].transpose(2, 1, 0)
            raw = mat['labels'][i].T
    except OSError as err:
        return f'frame {i + 1:04d} is unreadable ({err})'
    if raw.max() >= len(to40):
        return (f'frame {i + 1:04d} has raw label {raw.max()}, the mapping '
                f'covers 0..{len(to40) - 1}')
    Image.fromarray(image).save(osp.join(out_dir, 'image', png))
    Image.fromarray(to13[raw]).save(osp.join(out_dir, 'label', png))
    Image.fromarray(to40[raw]).save(osp.join(out_dir, 'label40', png))
    return None


def convert_nyu(labeled_mat: str,
                meta_dir: str,
                out_dir: str,
                overwrite: bool = False,
                nproc: int = 1) -> Dict[str, int]:
    """Write the dataset under ``out_dir``.

    Args:
        labeled_mat (str): ``nyu_depth_v2_labeled.mat``.
        meta_dir (str): Folder with ``splits.mat``, ``classMapping40.mat``
            and ``class13Mapping.mat``.
        out_dir (str): Output folder, the dataset's ``data_root``.
        overwrite (bool): Replace an existing, non-empty ``out_dir``.
            Default: ``False``.
        nproc (int): Number of processes that write the frames. Default: 1
            (this process).

    Returns:
        dict[str, int]: Number of frames written per split.

    Raises:
        FileNotFoundError: If an input is missing.
        FileExistsError: If ``out_dir`` is not empty and not ``overwrite``.
        ValueError: If an input is corrupt or inconsistent.
    """
    if nproc < 1:
        raise ValueError(f'nproc must be at least 1, got {nproc}')
    if not osp.isfile(labeled_mat):
        raise FileNotFoundError(
            f'{labeled_mat!r} not found; download nyu_depth_v2_labeled.mat '
            'from https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html')
    with atomic_folder(out_dir, overwrite) as tmp:
        to40, to13 = load_label_tables(meta_dir)
        splits = load_splits(meta_dir, _check_labeled_mat(labeled_mat))
        frames = []
        for split, ndxs in splits.items():
            for folder in ('image', 'label', 'label40'):
                os.makedirs(osp.join(tmp, folder, split))
            frames += [(i, f'{split}/{i + 1:04d}.png') for i in ndxs]
        print(f'Writing {len(frames)} frames from {labeled_mat}')
        write = partial(_write_frame, labeled_mat, to40, to13, tmp)
        if nproc == 1:
            problems = track_progress(write, frames)
        else:
            problems = track_parallel_progress(write, frames, nproc)
        bad = [problem for problem in problems if problem]
        if bad:
            raise ValueError(f'{labeled_mat!r}: {len(bad)} of {len(frames)} '
                             'frames cannot be converted, e.g. '
                             f'{"; ".join(bad[:5])}')
        for split, ndxs in splits.items():
            with open(osp.join(tmp, f'{split}.txt'), 'w') as f:
                f.writelines(f'{i + 1:04d}\n' for i in ndxs)
    return {split: len(ndxs) for split, ndxs in splits.items()}


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
    parser.add_argument(
        '--nproc',
        type=int,
        default=min(4, os.cpu_count() or 1),
        help='number of processes that write the frames (default: the '
        'CPU count, at most 4)')
    args = parser.parse_args()
    try:
        counts = convert_nyu(args.labeled_mat, args.meta_dir, args.out_dir,
                             args.overwrite, args.nproc)
    except (OSError, ValueError) as err:
        sys.exit(f'error: {err}')
    print(f'{counts} frames written to {args.out_dir}')


if __name__ == '__main__':
    main()
