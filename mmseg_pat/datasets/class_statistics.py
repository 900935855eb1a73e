"""Training-set class pixel counts and the head / body / tail split.

The long-tail baselines (BLV, logit adjustment, class-weighted
cross-entropy) and the rare-class metric of ``shared/docs/PAT_SPEC.md``
(sections 4 and 5) all start from the number of training pixels of each
class. This module counts them as the dataset's ``LoadAnnotations`` loads the
label maps (so ``reduce_zero_label`` and the dataset's ``label_map`` apply),
stores them as JSON (``tools/analysis/class_statistics.py`` writes the file
that configs then name, or configs say ``class_counts='train_set'`` and
:func:`resolve_class_counts` computes it), and splits the classes into
frequency groups.

Class counts are whole pixel numbers. Where a count of 0 would make a
logarithm infinite, the class is treated as having one pixel
(:func:`log_class_prior`).
"""
import copy
import hashlib
import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmengine.utils import mkdir_or_exist
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import DATASETS

#: Frequency groups, from the most to the least frequent classes.
FREQUENCY_GROUPS = ('head', 'body', 'tail')

ClassCounts = Union[str, Sequence[int], np.ndarray]
#: ``class_counts`` value meaning "the pixel counts of this config's training
#: set"; :func:`resolve_class_counts` (run by tools/train.py and
#: tools/test.py) replaces it by the path of a JSON file computed once.
FROM_TRAIN_SET = 'train_set'


def _annotation_loader(dataset) -> LoadAnnotations:
    """The dataset's own ``LoadAnnotations``, or MMSeg's default one."""
    for transform in getattr(dataset.pipeline, 'transforms', ()):
        if isinstance(transform, LoadAnnotations):
            return transform
    return LoadAnnotations()


def class_pixel_counts(dataset, ignore_index: int = 255) -> np.ndarray:
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

    Returns:
        np.ndarray: Pixel count of each class, int64 of shape (C, ).

    Raises:
        ValueError: If a label map holds a value that is neither a class
            index in [0, C) nor ``ignore_index``.
    """
    if hasattr(dataset, 'datasets'):
        return sum(
            class_pixel_counts(part, ignore_index)
            for part in dataset.datasets)
    if hasattr(dataset, 'dataset'):
        return class_pixel_counts(dataset.dataset, ignore_index)
    dataset.full_init()
    num_classes = len(dataset.metainfo['classes'])
    loader = _annotation_loader(dataset)
    counts = np.zeros(num_classes, np.int64)
    for i in range(len(dataset)):
        results = loader(dataset.get_data_info(i))
        label = results['gt_seg_map']
        hist = np.bincount(
            label[label != ignore_index].ravel(), minlength=num_classes)
        bad = np.flatnonzero(hist[num_classes:]) + num_classes
        if bad.size:
            raise ValueError(
                f'{results["seg_map_path"]}: label values '
                f'{bad[:10].tolist()} are outside [0, {num_classes}) and '
                f'are not ignore_index={ignore_index}. Check the classes '
                'and reduce_zero_label of the dataset.')
        counts += hist[:num_classes]
    return counts


def check_num_classes(class_counts: Sequence, num_classes: int) -> None:
    """Raise a ValueError unless there is one count per class.

    Args:
        class_counts (Sequence): Class counts (or values derived from them).
        num_classes (int): Number of classes of the model or dataset.
    """
    if len(class_counts) != num_classes:
        raise ValueError(
            f'class_counts has {len(class_counts)} entries but the model '
            f'has {num_classes} classes; recompute with '
            'tools/analysis/class_statistics.py CONFIG --out FILE and pass '
            'FILE as class_counts.')


def load_class_counts(class_counts: ClassCounts,
                      num_classes: Optional[int] = None) -> np.ndarray:
    """Read class pixel counts given as a sequence or as a JSON file.

    Args:
        class_counts (str | Sequence[int] | np.ndarray): The counts, or the
            path of a JSON file holding either the object written by
            :func:`save_class_counts` or a plain list.
        num_classes (int, optional): If given, the number of classes the
            counts must have. Default: None (not checked).

    Returns:
        np.ndarray: The counts, int64 of shape (C, ).

    Raises:
        ValueError: If the counts are not a non-empty list of whole numbers
            >= 0, or do not have ``num_classes`` entries.
    """
    if isinstance(class_counts, str) and class_counts == FROM_TRAIN_SET:
        raise ValueError(
            f"class_counts='{FROM_TRAIN_SET}' must be resolved before the "
            'model is built: tools/train.py and tools/test.py do it; with '
            'your own script call mmseg_pat.datasets.resolve_class_counts('
            'cfg, cache_dir) first.')
    if isinstance(class_counts, str):
        with open(class_counts) as f:
            content = json.load(f)
        if isinstance(content, dict):
            content = content['counts']
        class_counts = content
    values = np.asarray(class_counts, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError('class_counts must be a non-empty list with one '
                         f'count per class, got shape {values.shape}')
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0)
                         | (values != np.round(values)))
    if bad.size:
        raise ValueError(
            'class_counts must be pixel counts (whole numbers >= 0), got '
            f'{values[bad[0]]} at index {bad[0]}')
    if num_classes is not None:
        check_num_classes(values, num_classes)
    return values.astype(np.int64)


def frequency_groups(class_counts: ClassCounts) -> Dict[str, List[int]]:
    """Split classes into head, body and tail by training pixel frequency.

    With C classes, the ``C // 3`` most frequent classes are the head and the
    ``C // 3`` rarest the tail; the body takes the rest, so it gets the one
    or two classes left over when C is not divisible by 3 (19 classes: 6 /
    7 / 6). Every class with no training pixel is in the tail, even if that
    makes the tail larger than a third. Ties are broken by class index, the
    lower index counting as the more frequent.

    Args:
        class_counts (str | Sequence[int] | np.ndarray): Training pixel
            counts, as accepted by :func:`load_class_counts`.

    Returns:
        dict[str, list[int]]: Class indices of ``'head'``, ``'body'`` and
        ``'tail'``, each from the most to the least frequent.
    """
    counts = load_class_counts(class_counts)
    third = len(counts) // 3
    order = np.argsort(-counts, kind='stable').tolist()
    num_tail = max(third, int(np.sum(counts == 0)))
    num_head = min(third, len(counts) - num_tail)
    return dict(
        head=order[:num_head],
        body=order[num_head:len(counts) - num_tail],
        tail=order[len(counts) - num_tail:])


def log_class_prior(class_counts: ClassCounts) -> np.ndarray:
    """Log of each class's share of the training pixels.

    A class with no training pixel is treated as having one, so the prior
    is positive and its log finite.

    Args:
        class_counts (str | Sequence[int] | np.ndarray): Training pixel
            counts, as accepted by :func:`load_class_counts`.

    Returns:
        np.ndarray: ``log(n_c / sum(n))`` with ``n_c`` clamped to >= 1,
        float64 of shape (C, ).
    """
    counts = np.maximum(load_class_counts(class_counts), 1).astype(np.float64)
    return np.log(counts) - math.log(counts.sum())


def save_class_counts(path: str, counts: Sequence[int],
                      classes: Sequence[str]) -> Dict:
    """Write class counts as JSON for :func:`load_class_counts`.

    The file holds ``classes``, ``counts``, ``frequencies`` (each count over
    the total; 0 if there is no pixel at all) and ``groups``, the class
    indices of :func:`frequency_groups`.

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
    mkdir_or_exist(osp.dirname(osp.abspath(path)))
    with open(path, 'w') as f:
        json.dump(content, f, indent=1)
    return content


def _holders_of_train_set_counts(node) -> List[dict]:
    """Every dict under ``node`` whose ``class_counts`` is FROM_TRAIN_SET."""
    found = []
    if isinstance(node, dict):
        if node.get('class_counts') == FROM_TRAIN_SET:
            found.append(node)
        for value in node.values():
            found += _holders_of_train_set_counts(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            found += _holders_of_train_set_counts(value)
    return found


def resolve_class_counts(cfg, cache_dir: str) -> Optional[str]:
    """Fill in ``class_counts='train_set'`` throughout a config.

    The training set's class pixel counts are computed once (as its
    ``LoadAnnotations`` loads the labels) and cached as JSON in
    ``cache_dir``, under a name derived from the dataset settings, so a
    changed dataset is counted again. Every ``class_counts='train_set'`` in
    the config (losses, evaluators) becomes the path of that file.

    Args:
        cfg (mmengine.Config): The full config (with ``train_dataloader``).
        cache_dir (str): Where the JSON is kept, e.g. the work dir.

    Returns:
        str | None: The JSON's absolute path, or None if nothing asked for
        it.
    """
    holders = _holders_of_train_set_counts(cfg._cfg_dict if hasattr(
        cfg, '_cfg_dict') else cfg)
    if not holders:
        return None
    dataset_cfg = copy.deepcopy(cfg['train_dataloader']['dataset'])
    key = hashlib.sha1(
        json.dumps(dataset_cfg, sort_keys=True,
                   default=str).encode()).hexdigest()[:12]
    # Absolute: the config written into the work dir must still find the
    # file when it is read from another working directory.
    path = osp.abspath(osp.join(cache_dir, f'class_counts_train_{key}.json'))
    if osp.isfile(path):
        print_log(f'class pixel counts of the training set: {path}',
                  logger='current')
    else:
        print_log('counting the class pixels of the training set (once; '
                  f'cached in {path})', logger='current')
        with DefaultScope.overwrite_default_scope(
                cfg.get('default_scope', 'mmseg')):
            dataset = DATASETS.build(dataset_cfg)
        counts = class_pixel_counts(dataset)
        # Written whole then renamed: concurrent ranks may both count.
        save_class_counts(path + f'.{os.getpid()}.tmp', counts,
                          dataset.metainfo['classes'])
        os.replace(path + f'.{os.getpid()}.tmp', path)
    for holder in holders:
        holder['class_counts'] = path
    return path
