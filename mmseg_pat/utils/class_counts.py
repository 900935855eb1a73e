"""Training-set class pixel counts: reading them, and what follows from them.

The long-tail baselines (BLV, logit adjustment, class-weighted
cross-entropy) and the rare-class metric all start from the number of
training pixels of each class (``docs/method.md``, "Baselines" and
"Rare classes"). This module holds the pure maths (counts -> frequency
groups, log-priors) and :class:`ClassCountsUser`, the part of a loss or
metric that takes the counts, possibly later: ``class_counts='train_set'``
is filled in during the run by ``ClassCountsHook``. Counting a dataset is
``mmseg_pat.datasets.class_statistics``'s business.

Class counts are whole pixel numbers. Where a count of 0 would make a
logarithm infinite, the class is treated as having one pixel
(:func:`log_class_prior`).
"""
import json
import math
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

#: Frequency groups, from the most to the least frequent classes.
FREQUENCY_GROUPS = ('head', 'body', 'tail')

ClassCounts = Union[str, Sequence[int], np.ndarray]
#: ``class_counts`` value meaning "the pixel counts of this run's training
#: set", filled in by ``ClassCountsHook``.
FROM_TRAIN_SET = 'train_set'


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
            "FILE as class_counts, or use class_counts='train_set'.")


def load_class_counts(class_counts: ClassCounts,
                      num_classes: Optional[int] = None) -> np.ndarray:
    """Read class pixel counts given as a sequence or as a JSON file.

    Args:
        class_counts (str | Sequence[int] | np.ndarray): The counts, or the
            path of a JSON file holding either the object written by
            ``save_class_counts`` or a plain list.
        num_classes (int, optional): If given, the number of classes the
            counts must have. Default: None (not checked).

    Returns:
        np.ndarray: The counts, int64 of shape (C, ).

    Raises:
        ValueError: If the counts are not a non-empty list of whole numbers
            >= 0, or do not have ``num_classes`` entries, or are still
            ``'train_set'``.
    """
    if isinstance(class_counts, str) and class_counts == FROM_TRAIN_SET:
        raise ValueError(
            f"class_counts='{FROM_TRAIN_SET}' is filled in during the run by "
            "ClassCountsHook: add dict(type='ClassCountsHook') to "
            'custom_hooks, or give the counts (a list or a JSON file).')
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


class ClassCountsUser:
    """A loss or metric configured with training-set class counts.

    ``class_counts`` is a list, a JSON file, or ``'train_set'``: then the
    counts arrive during the run (``ClassCountsHook`` calls
    :meth:`set_class_counts`), and using the object before raises a
    ValueError that says what to add. Subclasses call
    :meth:`_init_class_counts` in ``__init__`` and implement
    :meth:`_use_class_counts`.
    """

    class_counts: Optional[np.ndarray] = None

    def _init_class_counts(self, class_counts: ClassCounts) -> None:
        self.class_counts = None
        if not (isinstance(class_counts, str)
                and class_counts == FROM_TRAIN_SET):
            self.set_class_counts(class_counts)

    @property
    def class_counts_pending(self) -> bool:
        """True while ``'train_set'`` waits to be filled in."""
        return self.class_counts is None

    def set_class_counts(self, class_counts: ClassCounts) -> None:
        """Take the counts (a list, an array or a JSON file)."""
        self.class_counts = load_class_counts(class_counts)
        self._use_class_counts(self.class_counts)

    def _use_class_counts(self, counts: np.ndarray) -> None:
        """Derive what the object needs from the counts."""
        raise NotImplementedError

    def _require_class_counts(self) -> np.ndarray:
        if self.class_counts is None:
            load_class_counts(FROM_TRAIN_SET)  # raises, saying what to do
        return self.class_counts
