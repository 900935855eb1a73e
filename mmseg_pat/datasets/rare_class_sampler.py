"""RareClassSampler: rare-class sampling (RCS) as an MMEngine data sampler.

Rare-class sampling is from DAFormer (Hoyer et al., CVPR 2022, arXiv
2111.14887, section 3.3): a training image is drawn by first drawing a class
``c`` with probability

    p_c = exp((1 - f_c) / T) / sum_k exp((1 - f_k) / T)

(``f_c``: the class's share of the training set's labelled pixels, ``T``
the temperature), then an image uniformly among those that hold at least
``min_pixels`` pixels of ``c``. Rare classes are drawn more often, and
with them the images that show them. A class that no image holds with
enough pixels gets probability 0 (the log says which, once).

Why a sampler and not a dataset wrapper (DAFormer wraps its dataset):

* it leaves the dataset and its indices untouched: ``PrevPredictionHook``
  keys its memory by dataset index and completes the dataset's pipeline,
  and ``ClassCountsHook`` and the evaluation read the dataset, all as
  without RCS;
* it works with any MMSeg dataset and needs nothing of it but its label
  files (counted as the dataset's ``LoadAnnotations`` loads them);
* it resumes exactly. MMEngine's ``IterBasedTrainLoop`` builds the sampler
  again on ``--resume`` and skips the iterations already done by drawing
  them again (OneDL's MMEngine calls :meth:`RareClassSampler.skip`
  instead), so a sampler whose stream is a pure function of (seed, rank,
  world size, epoch) gives the resumed run the batches the uninterrupted
  run would have had. A wrapper that draws in ``__getitem__`` would depend
  on the workers' random state instead.

The stream: one global sequence of draws per (seed, epoch), made with
NumPy's PCG64 in fixed chunks, on the host (the sampler runs in the main
process and touches no device). Rank ``r`` of ``W`` takes the draws at
positions ``r, r + W, r + 2W, ...``, so the ``W`` ranks together see
exactly the draws one process would see: changing the number of GPUs
changes who loads an image, not which images are drawn. Resume is exact
when the seed is fixed (``randomness = dict(seed=...)``): the runner builds
the sampler before it reads the checkpoint's seed, as for MMEngine's own
samplers.

The per-image class counts are counted once, on rank 0, with a progress
bar, cached as ``.npz`` next to the training set's class counts
(:func:`~mmseg_pat.datasets.class_statistics.cached_per_image_class_counts`)
and sent to the other ranks (MMEngine's ``broadcast_object_list``, once,
when the sampler is built); ``f_c`` is their sum. DAFormer also crops
around the drawn class (``min_crop_ratio``); that is the crop transform's
job and not done here.
"""
import itertools
import logging
import math
import numbers
import os.path as osp
from typing import Iterator, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import MMLogger, print_log
from mmseg.registry import DATA_SAMPLERS
from torch.utils.data import Sampler

from mmseg_pat.datasets.class_statistics import (cached_per_image_class_counts,
                                                 label_file_paths,
                                                 per_image_class_counts)
from mmseg_pat.utils.dist import from_rank_zero

#: Default ``min_pixels``: 0.15 % of an image's labelled pixels. DAFormer
#: asks 3000 pixels of its per-image statistics, which are counted on the
#: full-resolution source labels (GTA5, 1914 x 1052 = 2.0 Mpx, the
#: resolution of Cityscapes' 2048 x 1024 too): 0.15 % of an image. As a
#: share the threshold keeps that meaning at any image size, where 3000
#: pixels would be three quarters of a 64 x 64 image and a speck of a
#: 4000 x 3000 aerial tile.
DEFAULT_MIN_PIXELS = 0.0015
#: Draws made at a time; a constant, since the stream depends on it.
CHUNK = 1024

MinPixels = Union[int, float]


def _check_min_pixels(min_pixels: MinPixels) -> None:
    is_count = (isinstance(min_pixels, numbers.Integral)
                and not isinstance(min_pixels, bool) and min_pixels >= 1)
    is_share = (isinstance(min_pixels, float) and 0 < min_pixels < 1)
    if not (is_count or is_share):
        raise ValueError(
            'min_pixels must be a pixel count (an integer >= 1) or a share '
            "of an image's labelled pixels (a float in (0, 1)), got "
            f'{min_pixels!r}')


def _check_temperature(temperature: float) -> None:
    if (not isinstance(temperature, numbers.Real)
            or isinstance(temperature, bool)
            or not math.isfinite(temperature) or temperature <= 0):
        raise ValueError(
            f'temperature must be a number > 0, got {temperature!r}')


def qualifying_images(per_image_counts: np.ndarray,
                      min_pixels: MinPixels = DEFAULT_MIN_PIXELS
                      ) -> np.ndarray:
    """Which images hold enough pixels of each class to be drawn for it.

    Args:
        per_image_counts (np.ndarray): Pixel count of each class in each
            image, shape (N, C).
        min_pixels (int | float): Pixels of a class that an image must hold
            to be drawn for it: a count (int >= 1), or a share of the
            image's labelled pixels (float in (0, 1)). Default: 0.0015.

    Returns:
        np.ndarray: Boolean (N, C); image i holds class c with at least
        ``min_pixels`` pixels (and at least one).
    """
    _check_min_pixels(min_pixels)
    counts = np.asarray(per_image_counts)
    if isinstance(min_pixels, float):
        threshold = min_pixels * counts.sum(axis=1, keepdims=True)
    else:
        threshold = min_pixels
    return (counts >= threshold) & (counts > 0)


def rare_class_probabilities(class_counts: Sequence[int],
                             temperature: float = 0.01,
                             available: Optional[Sequence[bool]] = None
                             ) -> np.ndarray:
    """RCS's class draw probabilities, ``p_c ∝ exp((1 - f_c) / T)``.

    Args:
        class_counts (Sequence[int]): Training pixel count of each class;
            ``f_c`` is each count over their sum.
        temperature (float): ``T`` (> 0); smaller draws rare classes more
            often. Default: 0.01 (DAFormer's).
        available (Sequence[bool], optional): Classes that can be drawn
            (that some image holds with enough pixels); the others get
            probability 0. Default: None (every class).

    Returns:
        np.ndarray: Probabilities, float64 of shape (C, ), summing to 1.

    Raises:
        ValueError: If ``temperature`` is not a number > 0, or no class is
            available.
    """
    _check_temperature(temperature)
    counts = np.asarray(class_counts, dtype=np.float64)
    available = (np.ones(counts.shape, bool)
                 if available is None else np.asarray(available, bool))
    if not available.any():
        raise ValueError('no class can be drawn')
    frequencies = counts / max(counts.sum(), 1.0)
    logits = np.where(available, (1 - frequencies) / temperature, -np.inf)
    # exp(100) at T = 0.01: work relative to the largest
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def _run_work_dir() -> Optional[str]:
    """The work dir of the MMEngine runner building this sampler, if any.

    The runner makes its logger the current one and writes its log to
    ``<work_dir>/<timestamp>/<timestamp>.log`` before it builds a loop.
    """
    log_file = getattr(MMLogger.get_current_instance(), 'log_file', None)
    return osp.dirname(osp.dirname(log_file)) if log_file else None


def _per_image_counts(dataset, cache_dir: Optional[str],
                      nproc: int) -> np.ndarray:
    """The per-image table, cached in ``cache_dir`` when there is one."""
    cache_dir = cache_dir or _run_work_dir()
    if cache_dir is None:
        print_log(
            'RareClassSampler: counting the class pixels of each training '
            'image (not cached: no cache_dir and no runner work dir)',
            logger='current')
        return per_image_class_counts(dataset, nproc=nproc, progress=True)
    return cached_per_image_class_counts(dataset, cache_dir, nproc)[0]


def _check_indices_are_rows(dataset, num_images: int) -> None:
    """Dataset index i (< num_images) must be the image of table row i.

    True of a plain dataset, a ``ConcatDataset`` and a ``RepeatDataset``;
    a wrapper that reorders its images (``ClassBalancedDataset``) is
    refused.
    """
    if not (hasattr(dataset, 'datasets') or hasattr(dataset, 'dataset')):
        return
    paths = label_file_paths(dataset)
    if len(dataset) < num_images or any(
            dataset.get_data_info(i)['seg_map_path'] != path
            for i, path in enumerate(paths)):
        raise ValueError(
            f'RareClassSampler draws dataset indices 0..{num_images - 1} as '
            f'the label files in order, but the {type(dataset).__name__} '
            'given orders its images otherwise. Use the dataset itself, a '
            'ConcatDataset or a RepeatDataset (RCS already decides how '
            'often each image is drawn).')


@DATA_SAMPLERS.register_module()
class RareClassSampler(Sampler):
    """Draw training images by rare-class sampling (DAFormer's RCS).

    Each draw picks a class with probability ``p_c ∝ exp((1 - f_c) / T)``,
    then an image uniformly among those holding at least ``min_pixels``
    pixels of it (module docstring). Use it in place of MMEngine's
    ``InfiniteSampler`` (``IterBasedTrainLoop``) or, with
    ``infinite=False``, of its ``DefaultSampler`` (``EpochBasedTrainLoop``).

    Args:
        dataset (Sized): The training set (passed by the runner): an MMSeg
            dataset, a ``ConcatDataset`` or a ``RepeatDataset`` of them.
        temperature (float): ``T`` (> 0). Smaller draws rare classes more
            often; large ``T`` draws classes uniformly. Default: 0.01.
        min_pixels (int | float): Pixels of a class an image must hold to
            be drawn for it: a count (int >= 1, DAFormer's 3000 for 2 Mpx
            labels), or a share of the image's labelled pixels (float in
            (0, 1)). Default: 0.0015 (:data:`DEFAULT_MIN_PIXELS`).
        infinite (bool): Draw forever, for ``IterBasedTrainLoop``; False
            draws ``len(dataset)`` images per epoch (split over the ranks,
            rounded up to a multiple of the world size), a new stream each
            ``set_epoch``. Default: True.
        shuffle (bool): Accepted so that a config switching
            ``train_dataloader.sampler`` from MMEngine's samplers (which
            carry ``shuffle=True``) merges as is. Draws are random: only
            True. Default: True.
        seed (int, optional): Seed of the stream, the same on every rank
            (passed by the runner). Default: None (a random seed shared by
            the ranks, as MMEngine's samplers).
        cache_dir (str, optional): Where the per-image class counts are
            cached. Default: the work dir of the runner building the
            sampler (found through the runner's log file), where
            ``ClassCountsHook`` caches the class counts; outside a runner,
            nothing is cached.
        nproc (int): Processes that read the label maps when counting.
            Default: 4.

    Raises:
        ValueError: If an argument is out of range, no image holds any
            class with ``min_pixels`` pixels, a label value is not a class
            of the dataset, or a cached table does not match the dataset.
    """

    def __init__(self,
                 dataset,
                 temperature: float = 0.01,
                 min_pixels: MinPixels = DEFAULT_MIN_PIXELS,
                 infinite: bool = True,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 cache_dir: Optional[str] = None,
                 nproc: int = 4) -> None:
        _check_min_pixels(min_pixels)
        _check_temperature(temperature)
        if shuffle is not True:
            raise ValueError(
                'RareClassSampler draws images at random: shuffle must be '
                f'True, got {shuffle!r}')
        if not isinstance(infinite, bool):
            raise ValueError(f'infinite must be True or False, got '
                             f'{infinite!r}')
        if not isinstance(nproc, int) or nproc < 1:
            raise ValueError(f'nproc must be an integer >= 1, got {nproc!r}')
        self.rank, self.world_size = get_dist_info()
        self.dataset = dataset
        self.temperature = temperature
        self.min_pixels = min_pixels
        self.infinite = infinite
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0
        self._start = 0
        self.num_samples = math.ceil(len(dataset) / self.world_size)
        self.total_size = self.num_samples * self.world_size

        table = from_rank_zero(
            lambda: _per_image_counts(dataset, cache_dir, nproc))
        _check_indices_are_rows(dataset, len(table))
        self.class_counts = table.sum(axis=0)
        qualifies = qualifying_images(table, min_pixels)
        self.images_per_class = qualifies.sum(axis=0)
        classes = list(dataset.metainfo['classes'])
        if not self.images_per_class.any():
            raise ValueError(
                'RareClassSampler: no training image holds any class with '
                f'{self._threshold_text()} (min_pixels={min_pixels!r}; the '
                'most pixels of a class in one image: '
                f'{int(table.max(initial=0))}). Lower min_pixels.')
        self.class_probabilities = rare_class_probabilities(
            self.class_counts, temperature, self.images_per_class > 0)
        # images of class c: _members[_offsets[c]:_offsets[c + 1]]
        self._members = np.concatenate(
            [np.flatnonzero(column) for column in qualifies.T])
        self._offsets = np.concatenate([[0], np.cumsum(self.images_per_class)])
        self._cdf = np.cumsum(self.class_probabilities)
        self._cdf /= self._cdf[-1]  # a uniform draw in [0, 1) stays below
        self._log_classes(classes)

    def _threshold_text(self) -> str:
        if isinstance(self.min_pixels, float):
            share = 100 * self.min_pixels
            return f'at least {share:.3g}% of its labelled pixels'
        return f'at least {self.min_pixels} pixels'

    def _log_classes(self, classes: Sequence[str]) -> None:
        drawn = ', '.join(
            f'{name} {p:.3g} ({n})' for name, p, n in zip(
                classes, self.class_probabilities, self.images_per_class))
        print_log(
            f'RareClassSampler: temperature {self.temperature}; an image is '
            f'drawn for a class it holds with {self._threshold_text()}; '
            f'class draw probabilities (images): {drawn}', logger='current')
        never = [name for name, n in zip(classes, self.images_per_class)
                 if n == 0]
        if never:
            # a warning: MMEngine's logger prints each one once
            print_log(
                'RareClassSampler: no training image holds the classes '
                f'{never} with {self._threshold_text()}: they are never '
                'drawn for (probability 0).',
                logger='current', level=logging.WARNING)

    def draw_chunks(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """The global stream of draws (all ranks'), in chunks of
        :data:`CHUNK`: the class drawn and the dataset index drawn for it.

        A pure function of ``seed`` and ``epoch`` (``epoch`` stays 0 when
        ``infinite``); endless.

        Yields:
            tuple[np.ndarray, np.ndarray]: Classes and indices, int64 (CHUNK,).
        """
        rng = np.random.default_rng([int(self.seed) % 2**64, self.epoch])
        while True:
            uniform = rng.random((2, CHUNK))
            classes = np.searchsorted(self._cdf, uniform[0], side='right')
            sizes = self.images_per_class[classes]
            position = np.minimum((uniform[1] * sizes).astype(np.int64),
                                  sizes - 1)
            yield classes, self._members[self._offsets[classes] + position]

    def _global_indices(self) -> Iterator[int]:
        for _, indices in self.draw_chunks():
            yield from indices.tolist()

    def __iter__(self) -> Iterator[int]:
        """This rank's share of the stream: global positions ``rank``,
        ``rank + world_size``, ..., from the start (or from where
        :meth:`skip` said)."""
        start, self._start = self._start, 0
        stop = None if self.infinite else self.total_size
        return itertools.islice(self._global_indices(),
                                self.rank + start * self.world_size, stop,
                                self.world_size)

    def __len__(self) -> int:
        """``len(dataset)`` when ``infinite`` (as MMEngine's
        ``InfiniteSampler``), else the draws of this rank per epoch."""
        return len(self.dataset) if self.infinite else self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Draw the stream of ``epoch`` (``infinite=False``; the infinite
        stream does not change, as MMEngine's ``InfiniteSampler``)."""
        if not self.infinite:
            self.epoch = epoch

    def skip(self, num_samples: int) -> None:
        """Start the next iteration ``num_samples`` draws into this rank's
        stream (OneDL's MMEngine resumes through this, without loading the
        skipped batches).

        Args:
            num_samples (int): Draws of this rank already used, >= 0.
        """
        if not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(
                f'num_samples must be an integer >= 0, got {num_samples!r}')
        self._start = num_samples
