"""Test-only hooks around PrevPredictionHook, and a reference replay.

``MemoryRecorderHook`` records, on every rank and iteration, what the losses
were handed (the stored confidences of each image), each image's index,
pixel origins and the current confidences that the memory then stores.
:func:`replay` recomputes, with plain NumPy and no code of the package,
what every read should have returned given all the writes before it.
Imported by configs of subprocess tests through ``custom_imports``.
"""
import glob
import os.path as osp
import pickle
import time
from collections import defaultdict

import numpy as np
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

UNSEEN = 255


def _pat_losses(runner):
    model = getattr(runner.model, 'module', runner.model)
    return [m for m in model.modules() if type(m).__name__ == 'PATLoss']


@HOOKS.register_module()
class MemoryRecorderHook(Hook):
    """Saves ``records_rank<r>.pkl`` in the work dir at the end, with the
    rank's memory as it ended."""

    priority = 'LOW'  # before_train_iter: after PrevPredictionHook's

    def __init__(self):
        self.records = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        exchange = _pat_losses(runner)[0].exchange
        samples = data_batch['data_samples']
        self.records.append(
            dict(
                iter=runner.iter,
                sample_idx=[int(s.sample_idx) for s in samples],
                origin=[s.pixel_origin.data.cpu().numpy() for s in samples],
                origin_shape=[tuple(s.origin_shape) for s in samples],
                previous=[m.cpu().numpy() for m in exchange.previous]))

    def after_train(self, runner):
        rank = get_dist_info()[0]
        memory = next(h for h in runner.hooks
                      if type(h).__name__ == 'PrevPredictionHook').memory
        with open(osp.join(runner.work_dir, f'records_rank{rank}.pkl'),
                  'wb') as f:
            pickle.dump(dict(records=self.records,
                             table=memory.table.cpu().numpy()), f)


@HOOKS.register_module()
class CurrentRecorderHook(Hook):
    """Adds the current confidences to MemoryRecorderHook's records."""

    priority = 'ABOVE_NORMAL'  # after_train_iter: before PrevPredictionHook

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        recorder = next(h for h in runner.hooks
                        if isinstance(h, MemoryRecorderHook))
        exchange = _pat_losses(runner)[0].exchange
        recorder.records[-1]['current'] = exchange.current.cpu().numpy()


@HOOKS.register_module()
class PauseHook(Hook):
    """Waits at iteration ``at`` until the file ``release`` exists, after
    creating the file ``paused``."""

    def __init__(self, at, paused, release):
        self.at, self.paused, self.release = at, paused, release

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter != self.at:
            return
        open(self.paused, 'w').close()
        deadline = time.time() + 300
        while not osp.exists(self.release) and time.time() < deadline:
            time.sleep(0.1)


def load_records(work_dir):
    """({rank: records}, {rank: final memory}) from the
    ``records_rank*.pkl`` files of a work dir."""
    records, tables = {}, {}
    for path in glob.glob(osp.join(work_dir, 'records_rank*.pkl')):
        rank = int(osp.basename(path)[len('records_rank'):-len('.pkl')])
        with open(path, 'rb') as f:
            saved = pickle.load(f)
        records[rank], tables[rank] = saved['records'], saved['table']
    return records, tables


def cells_of(origin, origin_shape, grid):
    """Flat cell index of each pixel, as the method defines it."""
    rows, cols = grid
    height, width = origin_shape
    r = np.minimum(origin[0].astype(np.int64) * rows // height, rows - 1)
    c = np.minimum(origin[1].astype(np.int64) * cols // width, cols - 1)
    return r * cols + c


def replay(records, num_images, grid):
    """Check every recorded read against the writes before it.

    Iterations in order; within one, every rank reads before any rank
    writes, and writes apply in rank order (a later rank wins).

    Returns:
        tuple: (the reference memory, uint8 (num_images, rows * cols); the
        largest difference between a read and the reference, in units of
        1/254; the number of pixels compared; the number of reads whose
        image sat at a batch position other than its index).
    """
    table = np.full((num_images, grid[0] * grid[1]), UNSEEN, np.uint8)
    by_iter = defaultdict(dict)
    for rank, recs in records.items():
        for rec in recs:
            by_iter[rec['iter']][rank] = rec
    worst, compared, shuffled = 0.0, 0, 0
    for it in sorted(by_iter):
        ranks = sorted(by_iter[it])
        for rank in ranks:
            rec = by_iter[it][rank]
            for pos, idx in enumerate(rec['sample_idx']):
                cells = cells_of(rec['origin'][pos], rec['origin_shape'][pos],
                                 grid)
                stored = table[idx][cells]
                expected = np.where(stored == UNSEEN, -1.0, stored / 254.0)
                diff = np.abs(rec['previous'][pos] - expected) * 254
                worst = max(worst, float(diff.max()))
                compared += diff.size
                shuffled += pos != idx
        for rank in ranks:
            rec = by_iter[it][rank]
            for pos, idx in enumerate(rec['sample_idx']):
                cells = cells_of(rec['origin'][pos], rec['origin_shape'][pos],
                                 grid).ravel()
                h, w = rec['origin'][pos].shape[1:]
                conf = rec['current'][pos, :h, :w].ravel().astype(np.float64)
                keep = conf >= 0
                size = grid[0] * grid[1]
                sums = np.bincount(cells[keep], conf[keep], minlength=size)
                counts = np.bincount(cells[keep], minlength=size)
                hit = counts > 0
                table[idx][hit] = np.round(sums[hit] / counts[hit] * 254)
    return table, worst, compared, shuffled


def check_reads(work_dir, num_images, grid, world_size=1):
    """Assert that every read of a recorded run matches the NumPy replay of
    its writes, and that every rank ended with the same memory.

    Returns:
        np.ndarray: The replay's memory, uint8 (num_images, rows * cols).
    """
    records, tables = load_records(work_dir)
    assert sorted(records) == list(range(world_size))
    table, worst, compared, shuffled = replay(records, num_images, grid)
    assert compared > 0 and shuffled > 0  # images away from their index
    # the memory rounds float32 means, the replay float64 ones: they may
    # differ by one step where a mean falls on a rounding boundary
    assert worst <= 1.0 + 1e-4, worst
    for rank_table in tables.values():
        assert np.array_equal(rank_table, tables[0])
    assert np.abs(tables[0].reshape(table.shape).astype(int) -
                  table).max() <= 1
    return table
