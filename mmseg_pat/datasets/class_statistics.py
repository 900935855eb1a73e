"""Count the pixels of each class of a dataset, as the model sees them.

The counts are taken as the dataset's ``LoadAnnotations`` loads the label
maps (so ``reduce_zero_label`` and the dataset's ``label_map`` apply).
``ClassCountsHook`` counts a run's training set once and caches the result
under a key of the dataset's settings and its label files' names, sizes and
modification times; ``tools/analysis/class_statistics.py`` writes the JSON
that a config can name. What follows from the counts (frequency groups,
log-priors) is in :mod:`mmseg_pat.utils.class_counts`.
"""
import copy
import hashlib
import json
import os
import os.path as osp
from typing import Dict, Iterator, Sequence, Tuple

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
    """Class histogram of one label map (a task of class_pixel_counts)."""
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


def class_pixel_counts(dataset,
                       ignore_index: int = 255,
                       nproc: int = 1,
                       progress: bool = False) -> np.ndarray:
    """Count the pixels of each class over a dataset's label maps.

    Each label map is loaded by the dataset's ``LoadAnnotations`` transform
    (MMSeg's default one if the pipeline has none), so the counts are those
    of the labels the model is trained on. Dataset wrappers are looked
    through: a ``ConcatDataset`` sums its parts, and a wrapper with a
    ``dataset`` attribute (e.g. ``RepeatDataset``) counts each image once.

    Args:
        dataset (BaseSegDataset): An MMSeg dataset with ``seg_map_path`` in
            its data infos and ``classes`` in its metainfo.
        ignore_index (int): Label value of pixels that are not counted.
            Default: 255.
        nproc (int): Processes that read the label maps. Default: 1.
        progress (bool): Show MMEngine's progress bar. Default: False.

    Returns:
        np.ndarray: Pixel count of each class, int64 of shape (C, ).

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
    counts = np.zeros(num_classes, np.int64)
    for hist in hists:
        counts += hist
    return counts


def label_files_key(dataset) -> str:
    """A key that changes when the counts of :func:`class_pixel_counts`
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
        for i in range(len(leaf)):
            path = leaf.get_data_info(i)['seg_map_path']
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


def cached_class_counts(dataset,
                        cache_dir: str,
                        nproc: int = 1,
                        logger='current') -> Tuple[np.ndarray, str]:
    """The training set's class counts, counted once per
    :func:`label_files_key` and kept as JSON in ``cache_dir``.

    Returns:
        tuple[np.ndarray, str]: The counts and the JSON's absolute path.
    """
    path = osp.abspath(
        osp.join(cache_dir, f'class_counts_train_{label_files_key(dataset)}'
                 '.json'))
    if osp.isfile(path):
        print_log(f'class pixel counts of the training set: {path}',
                  logger=logger)
        return load_class_counts(path), path
    print_log(f'counting the class pixels of the training set with {nproc} '
              f'process(es) (once; cached in {path})', logger=logger)
    counts = class_pixel_counts(dataset, nproc=nproc, progress=True)
    save_class_counts(path, counts, dataset.metainfo['classes'])
    return counts, path
