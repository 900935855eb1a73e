"""A memory of previous true-class confidences, per training image.

Each training image owns a fixed grid of cells (e.g. 128 x 256 for
Cityscapes) in one uint8 tensor on the device of the model: 0..254 is a
confidence ``q = value / 254``, 255 means "never seen". A pixel of an
augmented crop finds its cell from its original row and column (see
``mmseg_pat.datasets.transforms.pixel_origins``), so reading and writing are
exact under any geometric augmentation.

Every per-pixel step (cell index, read, per-cell mean) is a torch operation
on the device of the tensors it is given; the host only handles the batch's
sample indices. Nothing here synchronises with the device: there is no
``.item()`` and no boolean indexing, whose result size the host would have to
wait for.
"""
import contextlib
import json
import os
import os.path as osp
import zlib
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from mmseg_pat.utils.atomic import atomic_write

UNSEEN = 255
SCALE = 254
FORMAT_VERSION = 2
DATA_FILE = 'memory.u8'
META_FILE = 'memory.json'
# Pixel origins are uint16 (LoadPixelOrigins): this many possible values.
_ORIGIN_VALUES = 1 << 16


class MemoryMismatchError(ValueError):
    """A stored memory does not fit the run that wants to use it."""


class MemorySnapshotError(ValueError):
    """A checkpoint's memory snapshot is missing or damaged."""


class PredictionMemory:
    """Per-image grids of true-class confidences in one uint8 tensor.

    Args:
        meta (dict): ``num_images``, ``grid`` (rows, cols), ``num_classes``,
            ``dataset`` (a fingerprint of the training set) and ``version``;
            see :meth:`make_meta`.
        device (str | torch.device): Where the table lives (the device of
            the model). Default: ``'cpu'``.
    """

    def __init__(self, meta: Dict, device='cpu'):
        self.meta = meta
        self.grid: Tuple[int, int] = tuple(meta['grid'])
        self.num_images = int(meta['num_images'])
        # One spare row at index num_images takes the writes of the padding
        # entries of a batch (see write()); it is never read.
        self._rows = torch.full(
            (self.num_images + 1, self.grid[0] * self.grid[1]),
            UNSEEN,
            dtype=torch.uint8,
            device=device)

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

    @property
    def device(self) -> torch.device:
        return self._rows.device

    @property
    def padding_index(self) -> int:
        """Sample index that marks a padding entry of :meth:`write`."""
        return self.num_images

    @property
    def table(self) -> Tensor:
        """The memory, uint8 (num_images, rows, cols) (a view)."""
        return self._rows[:self.num_images].view(self.num_images, *self.grid)

    @property
    def nbytes(self) -> int:
        return self.num_images * self.grid[0] * self.grid[1]

    @contextlib.contextmanager
    def one_cpu_thread(self):
        """Run the per-pixel calls of one iteration in one CPU thread.

        On the CPU they run in one thread: each is a single pass over the
        batch's pixels, and when dataloader workers keep the other cores
        busy, every multi-threaded torch operation waits for a core (seen
        here: 240 ms per iteration at 2 x 512 x 512 with 2 threads, 12 ms
        with one). The thread count is restored on exit. Nothing changes
        on a GPU.
        """
        if self.device.type != 'cpu':
            yield
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def cells(self, origin: Tensor, origin_shape: Sequence[int]) -> Tensor:
        """Grid cell (flat index) of each pixel from its original position.

        Cell ``(row * rows // H, col * cols // W)``, found through a table of
        all 65536 possible (uint16) origins: two gathers instead of integer
        divisions over every pixel. Pixels a transform filled (padding) get
        some cell; they are ignored pixels, never written.

        Args:
            origin (Tensor): (2, h, w) original row and column per pixel,
                integers in [0, 65535].
            origin_shape (tuple): (H, W) of the label when it was loaded.

        Returns:
            Tensor: int64 (h, w), on the device of ``origin``.
        """
        rows, cols = self.grid
        height, width = origin_shape
        every = torch.arange(_ORIGIN_VALUES, device=origin.device)
        row_cell = (every * rows).div_(height, rounding_mode='floor').clamp_(
            max=rows - 1).mul_(cols)
        col_cell = (every * cols).div_(width, rounding_mode='floor').clamp_(
            max=cols - 1)
        index = origin.reshape(2, -1)
        if index.dtype not in (torch.int32, torch.int64):
            index = index.long()
        return row_cell.index_select(0, index[0]).add_(
            col_cell.index_select(0, index[1])).view(origin.shape[1:])

    def read(self, sample_idx: Tensor,
             cells: Sequence[Tensor]) -> List[Tensor]:
        """Stored confidence of each pixel, -1 where never seen.

        Args:
            sample_idx (Tensor): int64 (N, ) dataset indices of the images.
            cells (list[Tensor]): Their pixels' cells, from :meth:`cells`.

        Returns:
            list[Tensor]: One float32 (h, w) map per image.
        """
        rows = self._rows.index_select(0, sample_idx)
        maps = []
        for row, cell in zip(rows, cells):
            stored = row.take(cell)
            maps.append(
                torch.where(stored == UNSEEN, -1.0,
                            stored.float().div_(SCALE)))
        return maps

    def cell_means(self, sample_idx: Tensor, cells: Sequence[Tensor],
                   confidence: Tensor) -> Tensor:
        """The batch's grid rows after this step, not yet stored.

        Each cell that holds a pixel with a confidence >= 0 gets the mean
        confidence of those pixels; the other cells keep their value.

        Args:
            sample_idx (Tensor): int64 (N, ) dataset indices of the images.
            cells (list[Tensor]): (h, w) cells of each image's pixels.
            confidence (Tensor): (N, H, W) confidences of the padded batch,
                negative where there is nothing to store (ignored or padded
                pixels); image i occupies ``[:h, :w]``.

        Returns:
            Tensor: uint8 (N, rows * cols), for :meth:`write`.
        """
        num_cells = self.grid[0] * self.grid[1]
        flat_cells, values = [], []
        for i, cell in enumerate(cells):
            h, w = cell.shape
            flat_cells.append(cell.reshape(-1) + i * num_cells)
            values.append(confidence[i, :h, :w].reshape(-1))
        flat_cells = torch.cat(flat_cells)
        values = torch.cat(values).float()
        valid = (values >= 0).float()
        size = len(cells) * num_cells
        sums = values.new_zeros(size).scatter_add_(0, flat_cells,
                                                   values.clamp(min=0) * valid)
        counts = values.new_zeros(size).scatter_add_(0, flat_cells, valid)
        means = sums.div_(counts.clamp(min=1)).mul_(SCALE).round_().clamp_(
            0, SCALE).to(torch.uint8)
        old = self._rows.index_select(0, sample_idx)
        return torch.where(counts.view_as(old) > 0, means.view_as(old), old)

    def write(self, sample_idx: Tensor, rows: Tensor) -> None:
        """Store whole grid rows.

        Where an image appears more than once, the last entry wins; entries
        whose index is :attr:`padding_index` change nothing that is read.

        Args:
            sample_idx (Tensor): int64 (M, ) dataset indices.
            rows (Tensor): uint8 (M, rows * cols), as :meth:`cell_means`
                returns.
        """
        if len(sample_idx) > 1:
            # index_copy_ keeps an arbitrary one of duplicate entries: make
            # every duplicate carry the last one's row first.
            same = sample_idx[None, :] == sample_idx[:, None]
            order = torch.arange(len(sample_idx), device=sample_idx.device)
            rows = rows.index_select(0, (same * order).amax(1))
        self._rows.index_copy_(0, sample_idx, rows)

    def clear(self) -> None:
        """Forget everything: every cell unseen."""
        self._rows.fill_(UNSEEN)

    def filled_fraction(self) -> float:
        """Fraction of all cells that hold a value (waits for the device)."""
        filled = torch.count_nonzero(self.table != UNSEEN).item()
        return filled / max(self.nbytes, 1)

    # -- checkpoints and files ----------------------------------------------
    def state_dict(self) -> Dict:
        """What a checkpoint keeps: the meta, the table (CPU) and its CRC."""
        table = self.table.cpu()
        return dict(
            meta=dict(self.meta),
            table=table,
            crc32=zlib.crc32(table.numpy().tobytes()))

    def load_state_dict(self, state: Dict) -> None:
        """Restore a :meth:`state_dict`.

        Raises:
            MemoryMismatchError: If the snapshot was made for another
                dataset, grid or number of classes.
            MemorySnapshotError: If the table is damaged (shape, type or
                CRC-32 differs from what was recorded).
        """
        check_meta(state.get('meta', {}), self.meta,
                   "the checkpoint's prediction memory")
        table = state.get('table')
        if (not isinstance(table, Tensor) or table.dtype != torch.uint8
                or tuple(table.shape) != tuple(self.table.shape)
                or zlib.crc32(table.numpy().tobytes()) != state.get('crc32')):
            raise MemorySnapshotError(
                "the checkpoint's prediction-memory snapshot is corrupt "
                '(its shape, type or CRC-32 differs from what was recorded)')
        self.table.copy_(table)

    def save(self, directory: str) -> None:
        """Write ``memory.u8`` (the table, row-major) and ``memory.json``
        (the meta) into ``directory``, each replaced whole."""
        os.makedirs(directory, exist_ok=True)
        table = self.table.cpu().numpy()
        with atomic_write(osp.join(directory, DATA_FILE), 'wb') as f:
            table.tofile(f)
        with atomic_write(osp.join(directory, META_FILE), 'w') as f:
            json.dump(self.meta, f, indent=1)

    @staticmethod
    def load_file(directory: str) -> Tuple[Dict, np.ndarray]:
        """Read what :meth:`save` wrote: (meta, uint8 table).

        Raises:
            MemorySnapshotError: If the data file does not have the size its
                meta describes.
        """
        with open(osp.join(directory, META_FILE)) as f:
            meta = json.load(f)
        shape = (meta['num_images'], *meta['grid'])
        path = osp.join(directory, DATA_FILE)
        if osp.getsize(path) != int(np.prod(shape)):
            raise MemorySnapshotError(
                f'{path} has {osp.getsize(path)} bytes, {int(np.prod(shape))}'
                ' expected: the file is truncated or corrupt.')
        return meta, np.fromfile(path, dtype=np.uint8).reshape(shape)


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
