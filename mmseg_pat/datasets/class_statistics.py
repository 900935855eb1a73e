"""Count the pixels of each class of a dataset, as the model sees them.

The counts are taken as the dataset's ``LoadAnnotations`` loads the label
maps (so ``reduce_zero_label`` and the dataset's ``label_map`` apply). They
are counted per image (:func:`per_image_class_counts`, the table that
``RareClassSampler`` draws from); the dataset's class counts are the sum of
that table. Both are cached under a key of the dataset's settings and its
label files' names, sizes and modification times (:func:`label_files_key`):
``ClassCountsHook`` keeps a run's training-set counts as JSON in the work
dir (:func:`cached_class_counts`), ``RareClassSampler`` its per-image table
as ``.npz`` beside it (:func:`cached_per_image_class_counts`), and a JSON is
summed from a table already there rather than counted again.
``tools/analysis/class_statistics.py`` writes the JSON that a config can
name. What follows from the counts (frequency groups, log-priors) is in
:mod:`mmseg_pat.utils.class_counts`.
"""
import copy
import hashlib
import json
import os
import os.path as osp
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log
from mmengine.utils import track_parallel_progress, track_progress
from mmseg.datasets.transforms import LoadAnnotations

from mmseg_pat.utils.atomic import atomic_write
from mmseg_pat.utils.class_counts import (  # noqa: F401 (re-exported)
    FREQUENCY_GROUPS, FROM_TRAIN_SET, check_num_classes, frequency_groups,
    load_class_counts, log_class_prior)


def _annotation_loader(dataset) -> LoadAnnotations:
    """The dataset's own ``LoadAnnotations``, or MMSeg's default one."""
    for transform in getattr(dataset.pipeline, 'transforms', ()):
        if isinstance(transform, LoadAnnotations):
            return transform
    return LoadAnnotations()


def _leaf_datasets(dataset) -> Iterator:
    """The datasets holding label files, through wrappers: each part of a
    ``ConcatDataset``, the inner dataset of ``RepeatDataset`` and the like
    (each image once)."""
    if hasattr(dataset, 'datasets'):
        for part in dataset.datasets:
            yield from _leaf_datasets(part)
    elif hasattr(dataset, 'dataset'):
        yield from _leaf_datasets(dataset.dataset)
    else:
        dataset.full_init()
        yield dataset


def _count_one(task: Tuple) -> np.ndarray:
    """Class histogram of one label map (a per_image_class_counts task)."""
    loader, info, num_classes, ignore_index = task
    results = loader(copy.deepcopy(info))
    label = results['gt_seg_map']
    hist = np.bincount(label[label != ignore_index].ravel(),
                       minlength=num_classes)
    bad = np.flatnonzero(hist[num_classes:]) + num_classes
    if bad.size:
        raise ValueError(
            f'{results["seg_map_path"]}: label values {bad[:10].tolist()} are '
            f'outside [0, {num_classes}) and are not ignore_index='
            f'{ignore_index}. Check the classes and reduce_zero_label of the '
            'dataset.')
    return hist[:num_classes]


def per_image_class_counts(dataset,
                           ignore_index: int = 255,
                           nproc: int = 1,
                           progress: bool = False) -> np.ndarray:
    """Count the pixels of each class in each label map of a dataset.

    Each label map is loaded by the dataset's ``LoadAnnotations`` transform
    (MMSeg's default one if the pipeline has none), so the counts are those
    of the labels the model is trained on. Dataset wrappers are looked
    through: a ``ConcatDataset`` gives the rows of its parts one after the
    other (its own index order), and a wrapper with a ``dataset`` attribute
    (e.g. ``RepeatDataset``) counts each image once.

    Args:
        dataset (BaseSegDataset): An MMSeg dataset with ``seg_map_path`` in
            its data infos and ``classes`` in its metainfo.
        ignore_index (int): Label value of pixels that are not counted.
            Default: 255.
        nproc (int): Processes that read the label maps. Default: 1.
        progress (bool): Show MMEngine's progress bar. Default: False.

    Returns:
        np.ndarray: Row i holds the pixel count of each class in the i-th
        label map (of :func:`label_file_paths`), int64 of shape (N, C).

    Raises:
        ValueError: If a label map holds a value that is neither a class
            index in [0, C) nor ``ignore_index``.
    """
    num_classes = len(dataset.metainfo['classes'])
    tasks = []
    for leaf in _leaf_datasets(dataset):
        loader = _annotation_loader(leaf)
        tasks += [(loader, leaf.get_data_info(i), num_classes, ignore_index)
                  for i in range(len(leaf))]
    if progress and nproc > 1:
        hists = track_parallel_progress(_count_one, tasks, nproc)
    elif progress:
        hists = track_progress(_count_one, tasks)
    else:
        hists = map(_count_one, tasks)
    table = np.zeros((len(tasks), num_classes), np.int64)
    for row, hist in zip(table, hists):
        row[:] = hist
    return table


def class_pixel_counts(dataset,
                       ignore_index: int = 255,
                       nproc: int = 1,
                       progress: bool = False) -> np.ndarray:
    """Count the pixels of each class over a dataset's label maps: the sum
    of :func:`per_image_class_counts` (same arguments; a ``ConcatDataset``
    sums its parts).

    Returns:
        np.ndarray: Pixel count of each class, int64 of shape (C, ).
    """
    return per_image_class_counts(dataset, ignore_index, nproc,
                                  progress).sum(axis=0)


def _label_paths(leaf) -> Iterator[str]:
    for i in range(len(leaf)):
        yield leaf.get_data_info(i)['seg_map_path']


def label_file_paths(dataset) -> List[str]:
    """The label file of each row of :func:`per_image_class_counts`."""
    return [
        path for leaf in _leaf_datasets(dataset)
        for path in _label_paths(leaf)
    ]


def label_files_key(dataset) -> str:
    """A key that changes when the counts of :func:`per_image_class_counts`
    may: the classes, the label mapping and loading settings, and the name,
    size and modification time of every label file."""
    digest = hashlib.sha1()
    for leaf in _leaf_datasets(dataset):
        settings = dict(
            classes=list(leaf.metainfo['classes']),
            label_map=getattr(leaf, 'label_map', None),
            reduce_zero_label=getattr(leaf, 'reduce_zero_label', None),
            # not its repr: LoadAnnotations fills in reduce_zero_label from
            # the first label it loads
            loader=type(_annotation_loader(leaf)).__name__)
        digest.update(json.dumps(settings, sort_keys=True,
                                 default=str).encode())
        for path in _label_paths(leaf):
            stat = os.stat(path)
            digest.update(f'{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n'
                          .encode())
    return digest.hexdigest()[:16]


def save_class_counts(path: str, counts: Sequence[int],
                      classes: Sequence[str]) -> Dict:
    """Write class counts as JSON for :func:`load_class_counts`.

    The file holds ``classes``, ``counts``, ``frequencies`` (each count over
    the total; 0 if there is no pixel at all) and ``groups``, the class
    indices of :func:`frequency_groups`. It is replaced whole.

    Args:
        path (str): The JSON file to write; its folder is created.
        counts (Sequence[int]): Pixel count of each class.
        classes (Sequence[str]): Class names, one per count.

    Returns:
        dict: The object written.
    """
    counts = load_class_counts(counts, num_classes=len(classes))
    total = int(counts.sum())
    content = dict(
        classes=list(classes),
        counts=counts.tolist(),
        frequencies=(counts / max(total, 1)).tolist(),
        groups=frequency_groups(counts))
    with atomic_write(path) as f:
        json.dump(content, f, indent=1)
    return content


def _cache_path(cache_dir: str, kind: str, key: str, suffix: str) -> str:
    return osp.abspath(osp.join(cache_dir, f'{kind}_train_{key}{suffix}'))


def _read_per_image_counts(path: str, dataset) -> np.ndarray:
    """The table of a ``.npz`` written by
    :func:`cached_per_image_class_counts`, checked against ``dataset``."""
    with np.load(path) as content:
        table, classes = content['counts'], content['classes'].tolist()
    num_images = sum(len(leaf) for leaf in _leaf_datasets(dataset))
    expected = list(dataset.metainfo['classes'])
    if (table.ndim != 2 or table.shape[0] != num_images
            or classes != expected or table.shape[1] != len(expected)
            or (table < 0).any()):
        raise ValueError(
            f'{path} holds per-image counts of shape {table.shape} for the '
            f'classes {tuple(classes)}, but the dataset has {num_images} '
            f'label maps and the {len(expected)} classes {tuple(expected)}. '
            'The file was not written for this dataset: delete it to count '
            'again.')
    return table.astype(np.int64)


def cached_per_image_class_counts(dataset,
                                  cache_dir: str,
                                  nproc: int = 1,
                                  logger='current') -> Tuple[np.ndarray, str]:
    """The per-image class counts (:func:`per_image_class_counts`), counted
    once per :func:`label_files_key` and kept as ``.npz`` in ``cache_dir``,
    beside the JSON of :func:`cached_class_counts`.

    Returns:
        tuple[np.ndarray, str]: The (N, C) table and the file's absolute
        path.

    Raises:
        ValueError: If the cached file does not match the dataset's number
            of label maps or its classes.
    """
    path = _cache_path(cache_dir, 'class_counts_per_image',
                       label_files_key(dataset), '.npz')
    if osp.isfile(path):
        print_log(f'per-image class pixel counts of the training set: {path}',
                  logger=logger)
        return _read_per_image_counts(path, dataset), path
    print_log(f'counting the class pixels of each training image with '
              f'{nproc} process(es) (once; cached in {path})', logger=logger)
    table = per_image_class_counts(dataset, nproc=nproc, progress=True)
    with atomic_write(path, 'wb') as f:
        np.savez_compressed(
            f, counts=table, classes=np.array(dataset.metainfo['classes']))
    return table, path


def cached_class_counts(dataset,
                        cache_dir: str,
                        nproc: int = 1,
                        logger='current') -> Tuple[np.ndarray, str]:
    """The training set's class counts, counted once per
    :func:`label_files_key` and kept as JSON in ``cache_dir``; summed from
    the per-image table of :func:`cached_per_image_class_counts` when that
    is already there.

    Returns:
        tuple[np.ndarray, str]: The counts and the JSON's absolute path.
    """
    key = label_files_key(dataset)
    path = _cache_path(cache_dir, 'class_counts', key, '.json')
    if osp.isfile(path):
        print_log(f'class pixel counts of the training set: {path}',
                  logger=logger)
        return load_class_counts(path), path
    per_image = _cache_path(cache_dir, 'class_counts_per_image', key, '.npz')
    if osp.isfile(per_image):
        print_log(f'class pixel counts of the training set: summed from '
                  f'{per_image} (cached in {path})', logger=logger)
        counts = _read_per_image_counts(per_image, dataset).sum(axis=0)
    else:
        print_log(f'counting the class pixels of the training set with '
                  f'{nproc} process(es) (once; cached in {path})',
                  logger=logger)
        counts = class_pixel_counts(dataset, nproc=nproc, progress=True)
    save_class_counts(path, counts, dataset.metainfo['classes'])
    return counts, path
