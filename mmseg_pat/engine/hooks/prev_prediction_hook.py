"""PrevPredictionHook: feed PATLoss the confidences of previous visits.

PAT's PCLA weights each pixel by how confident the model was on that image
location the last time it saw the image (arXiv 2404.05393; section 3 of
``shared/docs/PAT_SPEC.md``). Each training iteration this hook

* before the forward, reads the batch's stored confidences from a
  :class:`PredictionMemory` and hands them to every :class:`PATLoss` of the
  model (decode and auxiliary heads, through any model wrapper);
* after the step, writes the decode head's detached current confidences
  back into the grid cells the batch pixels came from.

The train pipeline must carry the pixel origins: ``LoadPixelOrigins`` right
after ``LoadAnnotations`` and ``PackSegInputsWithOrigins`` in place of
``PackSegInputs``. The memory is saved beside each checkpoint and restored
by ``--resume``.
"""
import hashlib
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch.distributed as torch_dist
from mmengine.dist import get_dist_info, is_distributed
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from mmseg_pat.datasets.transforms import (LoadPixelOrigins,
                                           PackSegInputsWithOrigins)
from mmseg_pat.engine.prediction_memory import PredictionMemory, check_meta
from mmseg_pat.models.losses import PATLoss

CHECKPOINT_KEY = 'prev_prediction_memory'


def _barrier() -> None:
    if is_distributed():
        torch_dist.barrier()


def _base_dataset(dataset):
    """The dataset whose indices are ``sample_idx`` (through wrappers such
    as ``RepeatDataset`` that keep their inner dataset in ``.dataset``)."""
    if type(dataset).__name__ == 'ConcatDataset':
        raise ValueError(
            'PrevPredictionHook does not support ConcatDataset: sample '
            'indices repeat across its parts. Merge the parts into one '
            'dataset (one ann_file) instead.')
    while hasattr(dataset, 'dataset') and not hasattr(dataset, 'pipeline'):
        dataset = dataset.dataset
    return dataset


def dataset_fingerprint(dataset) -> str:
    """A short hash of the training set's ordered list of label files."""
    digest = hashlib.sha1()
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        name = info.get('seg_map_path') or info.get('img_path') or str(i)
        digest.update(osp.basename(str(name)).encode() + b'\n')
    return f'{len(dataset)}:{digest.hexdigest()[:16]}'


@HOOKS.register_module()
class PrevPredictionHook(Hook):
    """Keep, per training image, the true-class confidences of the last
    visit, and give them to :class:`PATLoss` as ``confidence='previous'``.

    Args:
        grid (tuple[int, int]): Memory cells per image, (rows, cols); each
            image, whatever its size, is divided into this grid. Memory on
            disk is ``rows * cols`` bytes per training image.
            Default: (128, 128).
        memory_dir (str, optional): Where the live memory is kept. Default:
            ``<work_dir>/prev_prediction_memory``.
        log_interval (int): Every this many iterations, log the filled
            fraction of the memory and the mean confidence written per
            class. Default: 50.
        strict_resume (bool): On ``--resume``, refuse (raise) when the
            checkpoint's memory snapshot is missing or corrupt. ``False``
            warns and starts with an empty memory. A snapshot that does not
            match the dataset is always refused. Default: True.
    """

    priority = 'NORMAL'  # before CheckpointHook and LoggerHook

    def __init__(self,
                 grid: Sequence[int] = (128, 128),
                 memory_dir: Optional[str] = None,
                 log_interval: int = 50,
                 strict_resume: bool = True):
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f'grid must be (rows, cols) >= 1, got {grid}')
        self.grid = tuple(int(g) for g in grid)
        self.memory_dir = memory_dir
        self.log_interval = log_interval
        self.strict_resume = strict_resume
        self.memory: Optional[PredictionMemory] = None
        self._losses: List[PATLoss] = []
        self._writer: Optional[PATLoss] = None
        self._checkpoint_entry: Optional[Dict] = None
        self._class_sums = self._class_counts = None

    # -- set-up ------------------------------------------------------------
    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self._losses = [m for m in model.modules() if isinstance(m, PATLoss)]
        if not self._losses:
            raise ValueError(
                'PrevPredictionHook is on but the model has no PATLoss: set '
                "loss_decode=dict(type='PATLoss') on the decode head, or "
                'remove the hook from custom_hooks.')
        head = getattr(model, 'decode_head', None)
        head_losses = [m for m in head.modules() if isinstance(m, PATLoss)
                       ] if head is not None else []
        self._writer = (head_losses or self._losses)[0]
        num_classes = getattr(head, 'num_classes', None) or -1

        dataset = _base_dataset(runner.train_dataloader.dataset)
        self._check_pipeline(dataset)
        meta = PredictionMemory.make_meta(
            len(dataset), self.grid, num_classes, dataset_fingerprint(dataset))
        self.memory_dir = self.memory_dir or osp.join(
            runner.work_dir, 'prev_prediction_memory')
        # A run starts empty; --resume restores the checkpoint's snapshot in
        # before_train. Rank 0 creates the file, the others open it.
        if get_dist_info()[0] == 0:
            self.memory = PredictionMemory.create(self.memory_dir, meta)
        _barrier()
        if self.memory is None:
            self.memory = PredictionMemory.open(self.memory_dir, meta)
        self._class_sums = np.zeros(max(num_classes, 1))
        self._class_counts = np.zeros(max(num_classes, 1), dtype=np.int64)
        runner.logger.info(
            f'PrevPredictionHook: memory {self.memory_dir} '
            f'({self.memory.nbytes / 2**20:.1f} MiB on disk: '
            f'{meta["num_images"]} images x {self.grid[0]}x{self.grid[1]} '
            f'cells), feeding {len(self._losses)} PATLoss module(s)')

    @staticmethod
    def _check_pipeline(dataset) -> None:
        transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms',
                             [])
        kinds = [type(t) for t in transforms]
        problems = []
        if LoadPixelOrigins not in kinds:
            problems.append("dict(type='LoadPixelOrigins') right after "
                            "dict(type='LoadAnnotations')")
        if PackSegInputsWithOrigins not in kinds:
            problems.append("dict(type='PackSegInputsWithOrigins') in place "
                            "of dict(type='PackSegInputs')")
        if problems:
            raise ValueError(
                'PrevPredictionHook needs to know where each training pixel '
                'came from; add to train_dataloader.dataset.pipeline: ' +
                ' and '.join(problems) + '.')

    # -- resume ------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: Dict) -> None:
        # load_from also lands here: only a resumed run (iter > 0 in
        # before_train) restores the snapshot.
        self._checkpoint_entry = checkpoint.get(CHECKPOINT_KEY)

    def before_train(self, runner) -> None:
        if runner.iter == 0:
            return
        entry = self._checkpoint_entry
        try:
            if entry is None:
                raise FileNotFoundError(
                    'the checkpoint has no prediction-memory snapshot (it '
                    'was saved without PrevPredictionHook)')
            check_meta(entry['meta'], self.memory.meta,
                       'the checkpoint\'s prediction memory')
            if get_dist_info()[0] == 0:
                self.memory.restore(
                    self._snapshot_path(runner, entry), entry['crc32'])
        except FileNotFoundError as error:
            if self.strict_resume:
                raise FileNotFoundError(
                    f'{error}. Resume from a checkpoint saved with its '
                    'snapshot, or set PrevPredictionHook(strict_resume='
                    'False) to go on with an empty memory.') from error
            runner.logger.warning(
                f'{error}; the prediction memory starts empty.')
        _barrier()
        runner.logger.info(
            f'PrevPredictionHook: memory restored at iteration {runner.iter} '
            f'({self.memory.filled_fraction():.1%} of the cells filled)')

    def _snapshot_path(self, runner, entry: Dict) -> str:
        path = entry['file']
        if not osp.isfile(path):  # work dir moved: look beside the memory
            path = osp.join(self.memory_dir, 'snapshots', osp.basename(path))
        return path

    def before_save_checkpoint(self, runner, checkpoint: Dict) -> None:
        path = osp.join(self.memory_dir, 'snapshots',
                        f'iter_{runner.iter + 1}.u8')
        crc = self.memory.snapshot(path)
        checkpoint[CHECKPOINT_KEY] = dict(
            file=osp.abspath(path), crc32=crc, meta=self.memory.meta)
        self._remove_orphan_snapshots(runner, keep=path)

    def _remove_orphan_snapshots(self, runner, keep: str) -> None:
        """Delete snapshots whose checkpoint CheckpointHook has removed."""
        folder = osp.dirname(keep)
        out_dir = getattr(self._checkpoint_hook(runner), 'out_dir',
                          runner.work_dir)
        for name in os.listdir(folder):
            path = osp.join(folder, name)
            ckpt = osp.join(out_dir or runner.work_dir,
                            osp.splitext(name)[0] + '.pth')
            if name.endswith('.u8') and path != keep and not osp.isfile(ckpt):
                os.remove(path)

    @staticmethod
    def _checkpoint_hook(runner):
        for hook in runner.hooks:
            if type(hook).__name__ == 'CheckpointHook':
                return hook
        return None

    # -- every iteration ---------------------------------------------------
    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[Dict] = None) -> None:
        samples = data_batch['data_samples']
        maps = [
            self.memory.read(s.sample_idx, s.pixel_origin.data,
                             s.origin_shape) for s in samples
        ]
        for loss in self._losses:
            loss.prev_confidence = maps

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[Dict] = None,
                         outputs: Optional[Dict] = None) -> None:
        current = self._writer.last_confidence
        for loss in self._losses:
            loss.prev_confidence = None
        if current is None:
            return
        current = current.detach().cpu()
        for i, sample in enumerate(data_batch['data_samples']):
            origin = sample.pixel_origin.data
            h, w = origin.shape[-2:]
            confidence = current[i, :h, :w]  # padding is at bottom / right
            self.memory.write(sample.sample_idx, origin, sample.origin_shape,
                              confidence)
            self._update_class_stats(sample, confidence)
        if self._writer.last_known_fraction is not None:
            runner.message_hub.update_scalar(
                'train/memory_hit', self._writer.last_known_fraction)
        # Every rank's writes of this iteration land before a checkpoint
        # (saved by rank 0) copies the memory.
        _barrier()
        if self.every_n_train_iters(runner, self.log_interval):
            self._log_memory(runner)

    def _update_class_stats(self, sample, confidence) -> None:
        height, width = confidence.shape
        label = sample.gt_sem_seg.data[0, :height, :width].cpu().numpy()
        label = label.ravel()
        confidence = confidence.numpy().ravel()
        size = len(self._class_sums)
        keep = (confidence >= 0) & (label < size)
        label = label[keep].astype(np.int64)
        self._class_sums += np.bincount(
            label, weights=confidence[keep], minlength=size)
        self._class_counts += np.bincount(label, minlength=size)

    def _log_memory(self, runner) -> None:
        filled = self.memory.filled_fraction()
        runner.message_hub.update_scalar('train/memory_filled', filled)
        with np.errstate(invalid='ignore', divide='ignore'):
            means = self._class_sums / self._class_counts
        classes = (runner.train_dataloader.dataset.metainfo or {}).get(
            'classes') or [str(i) for i in range(len(means))]
        per_class = ', '.join(f'{c}: {m:.2f}' for c, m in zip(classes, means)
                              if not np.isnan(m))
        runner.logger.info(
            f'PrevPredictionHook: {filled:.1%} of the memory filled; mean '
            f'confidence written per class over the last '
            f'{self.log_interval} iterations: {per_class}')
        self._class_sums[:] = 0
        self._class_counts[:] = 0

    def after_run(self, runner) -> None:
        if self.memory is not None:
            self.memory.flush()
