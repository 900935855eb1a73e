"""A file-backed memory of previous true-class confidences, per image.

Each training image owns a fixed grid of cells (e.g. 128 x 256 for
Cityscapes) in one ``numpy.memmap`` of uint8: 0..254 is a confidence
``q = value / 254``, 255 means "never seen". A pixel of an augmented crop
finds its cell from its original row and column (see
``mmseg_pat.datasets.transforms.pixel_origins``), so reading and writing are
exact under any geometric augmentation.

The memory is shared by every process that opens the file (dataloader
workers never touch it; DDP ranks on one node write different images).
"""
import json
import os
import os.path as osp
import shutil
import zlib
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

UNSEEN = 255
SCALE = 254
FORMAT_VERSION = 1
DATA_FILE = 'memory.u8'
META_FILE = 'memory.json'


class MemoryMismatchError(ValueError):
    """A stored memory does not fit the run that wants to use it."""


def _crc32(path: str) -> int:
    crc = 0
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 24), b''):
            crc = zlib.crc32(chunk, crc)
    return crc


class PredictionMemory:
    """Per-image grids of true-class confidences, backed by a file.

    Use :meth:`create` or :meth:`open` rather than the constructor.

    Args:
        directory (str): Folder holding ``memory.u8`` and ``memory.json``.
        meta (dict): ``num_images``, ``grid`` (rows, cols), ``num_classes``,
            ``dataset`` (a fingerprint of the training set) and ``version``.
    """

    def __init__(self, directory: str, meta: Dict):
        self.directory = directory
        self.meta = meta
        self.grid: Tuple[int, int] = tuple(meta['grid'])
        self.array = np.memmap(
            osp.join(directory, DATA_FILE),
            dtype=np.uint8,
            mode='r+',
            shape=(meta['num_images'], *self.grid))

    @staticmethod
    def make_meta(num_images: int, grid: Sequence[int], num_classes: int,
                  dataset_fingerprint: str) -> Dict:
        """The description a memory is checked against."""
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f'grid must be (rows, cols) >= 1, got {grid}')
        return dict(
            num_images=int(num_images),
            grid=[int(g) for g in grid],
            num_classes=int(num_classes),
            dataset=dataset_fingerprint,
            version=FORMAT_VERSION)

    @classmethod
    def create(cls, directory: str, meta: Dict) -> 'PredictionMemory':
        """Create an empty memory (every cell unseen), replacing any."""
        os.makedirs(directory, exist_ok=True)
        path = osp.join(directory, DATA_FILE)
        array = np.memmap(
            path + '.tmp',
            dtype=np.uint8,
            mode='w+',
            shape=(meta['num_images'], *meta['grid']))
        array[:] = UNSEEN
        array.flush()
        del array
        os.replace(path + '.tmp', path)
        with open(osp.join(directory, META_FILE), 'w') as f:
            json.dump(meta, f, indent=1)
        return cls(directory, meta)

    @classmethod
    def open(cls, directory: str, expected: Dict) -> 'PredictionMemory':
        """Open an existing memory, refusing one that does not match."""
        meta_path = osp.join(directory, META_FILE)
        with open(meta_path) as f:
            meta = json.load(f)
        check_meta(meta, expected, f'the memory in {directory}')
        size = osp.getsize(osp.join(directory, DATA_FILE))
        expected_size = meta['num_images'] * meta['grid'][0] * meta['grid'][1]
        if size != expected_size:
            raise MemoryMismatchError(
                f'{osp.join(directory, DATA_FILE)} has {size} bytes, '
                f'{expected_size} expected: the file is truncated or corrupt.')
        return cls(directory, meta)

    @property
    def nbytes(self) -> int:
        return self.array.size

    # NumPy, not torch, for the per-pixel work: it runs in the training
    # process between forwards, where torch's CPU thread pool competes with
    # dataloader workers and small torch ops were seen to be 10x slower.
    def cell_index(self, origin: Tensor,
                   origin_shape: Sequence[int]) -> np.ndarray:
        """Grid cell (flat index) of each pixel from its original position.

        Args:
            origin (Tensor): (2, h, w) original row and column per pixel.
            origin_shape (tuple): (H, W) of the image when loaded.

        Returns:
            np.ndarray: int64 (h, w).
        """
        rows, cols = self.grid
        height, width = origin_shape
        origin = np.asarray(origin, dtype=np.int64)
        cell_row = np.minimum(origin[0] * rows // height, rows - 1)
        cell_col = np.minimum(origin[1] * cols // width, cols - 1)
        return cell_row * cols + cell_col

    def read(self, sample_idx: int, origin: Tensor,
             origin_shape: Sequence[int]) -> Tensor:
        """Stored confidence (h, w) of each pixel, -1 where never seen."""
        stored = self.array[sample_idx].reshape(-1)[self.cell_index(
            origin, origin_shape)]
        confidence = stored.astype(np.float32) / SCALE
        confidence[stored == UNSEEN] = -1.0
        return torch.from_numpy(confidence)

    def write(self, sample_idx: int, origin: Tensor,
              origin_shape: Sequence[int], confidence: Tensor) -> int:
        """Store the mean confidence of the pixels of each cell.

        Pixels with a negative confidence (ignored, padded) are skipped, and
        cells with no such pixel keep their value.

        Returns:
            int: The number of cells written.
        """
        cells = self.cell_index(origin, origin_shape).reshape(-1)
        confidence = np.asarray(
            confidence.detach().float().cpu(), dtype=np.float64).reshape(-1)
        keep = confidence >= 0
        cells, confidence = cells[keep], confidence[keep]
        num_cells = self.grid[0] * self.grid[1]
        sums = np.bincount(cells, weights=confidence, minlength=num_cells)
        counts = np.bincount(cells, minlength=num_cells)
        written = np.flatnonzero(counts)
        values = np.round(sums[written] / counts[written] * SCALE)
        row = self.array[sample_idx].reshape(-1)
        row[written] = np.clip(values, 0, SCALE).astype(np.uint8)
        return written.size

    def filled_fraction(self) -> float:
        """Fraction of all cells that hold a value."""
        return float(np.count_nonzero(self.array != UNSEEN)) / self.array.size

    def flush(self) -> None:
        self.array.flush()

    def snapshot(self, path: str) -> int:
        """Copy the memory to ``path``; return the copy's CRC-32."""
        self.flush()
        os.makedirs(osp.dirname(path), exist_ok=True)
        shutil.copyfile(osp.join(self.directory, DATA_FILE), path + '.tmp')
        os.replace(path + '.tmp', path)
        return _crc32(path)

    def restore(self, path: str, crc32: int) -> None:
        """Load the contents of a snapshot written by :meth:`snapshot`."""
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'the prediction-memory snapshot {path} referenced by the '
                'checkpoint is missing')
        if osp.getsize(path) != self.array.size or _crc32(path) != crc32:
            raise MemoryMismatchError(
                f'the prediction-memory snapshot {path} is corrupt (size or '
                'CRC-32 differs from what the checkpoint recorded)')
        self.array[:] = np.fromfile(path, dtype=np.uint8).reshape(
            self.array.shape)
        self.flush()


def check_meta(found: Dict, expected: Dict, what: str) -> None:
    """Raise :class:`MemoryMismatchError` naming every field that differs."""
    labels = dict(
        num_images='number of training images',
        grid='grid (rows, cols)',
        num_classes='number of classes',
        dataset='training-set fingerprint (the list of label files)',
        version='format version')
    diffs = [
        f'{labels[k]}: {found.get(k)!r} stored, {expected[k]!r} now'
        for k in labels if found.get(k) != expected[k]
    ]
    if diffs:
        raise MemoryMismatchError(
            f'{what} does not match this run: ' + '; '.join(diffs) +
            '. Resume with the dataset and PrevPredictionHook settings the '
            'checkpoint was trained with, or start a new run (a new work '
            'dir, or without --resume) to begin with an empty memory.')
