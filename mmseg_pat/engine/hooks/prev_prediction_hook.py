"""PrevPredictionHook: feed PATLoss the confidences of previous visits.

PAT's PCLA weights each pixel by how confident the model was on that image
location the last time it saw the image (arXiv 2404.05393; the method is
written up in ``docs/method.md``). During training, each iteration this hook

* before the forward, reads the batch's stored confidences from a
  :class:`PredictionMemory` and hands them to every :class:`PATLoss` of the
  model (decode and auxiliary heads, through any model wrapper) in a
  :class:`ConfidenceExchange`;
* after the step, stores the decode head's detached current confidences
  in the grid cells the batch pixels came from, and, with several ranks,
  sends the batch's new grid rows to every other rank, so that every rank
  holds the same memory on any number of nodes.

The memory lives on the device of the model and every per-pixel step runs
there. It is saved inside each checkpoint and restored by ``--resume``; each
node also writes its copy to ``memory_dir`` (at checkpoints and at the end of
training), which one run owns at a time. Outside training (``tools/test.py``,
``Runner.val()``, ``Runner.test()``) the hook does nothing.

The train pipeline must carry the pixel origins (``LoadPixelOrigins`` right
after ``LoadAnnotations``, ``PackSegInputsWithOrigins`` in place of
``PackSegInputs``). When the config's pipeline lacks them, the hook adds
them to the config's train loader and has the runner build its train loop
again from it, before anything is read (see :func:`rebuild_train_loop`).
The run's checkpoints are plain data (:mod:`mmseg_pat.engine.checkpoints`).
"""
import copy
import hashlib
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_gather, all_reduce, get_dist_info
from mmengine.hooks import Hook
from mmengine.runner import BaseLoop
from mmseg.registry import HOOKS
from torch import Tensor

from mmseg_pat.datasets.transforms import (add_pixel_origins,
                                           carries_pixel_origins)
from mmseg_pat.engine.checkpoints import check_resume, from_plain, to_plain
from mmseg_pat.engine.directory_lock import DirectoryLock
from mmseg_pat.engine.prediction_memory import (MemoryMismatchError,
                                                MemorySnapshotError,
                                                PredictionMemory)
from mmseg_pat.engine.train_loop import pipeline_config, rebuild_train_loop
from mmseg_pat.models.losses import ConfidenceExchange, PATLoss
from mmseg_pat.utils.model_heads import head_modules, unwrap
from mmseg_pat.utils.pat_config import (POINT_HEADS, PREDICTION_CALLS,
                                        check_pat_applies)
from mmseg_pat.visualization import memory_panel

CHECKPOINT_KEY = 'prev_prediction_memory'


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


def _head_kind(head) -> str:
    """The name of the first class of ``head``'s MRO that a rule names."""
    for base in type(head).__mro__:
        if base.__name__ in (*POINT_HEADS, *PREDICTION_CALLS):
            return base.__name__
    return ''


def find_pat_losses(model) -> Tuple[List[PATLoss], PATLoss, str]:
    """Every PATLoss of a model, the one whose confidences are stored, and
    which of its calls in an iteration is the prediction.

    The writer is the first PATLoss of the last decode head that sees
    whole label maps (a cascade's final head; PointRend's point head sees
    sampled points and is skipped), else the first PATLoss.

    Raises:
        ValueError: If the model has no PATLoss.
    """
    losses = [m for m in unwrap(model).modules() if isinstance(m, PATLoss)]
    if not losses:
        raise ValueError(
            'PrevPredictionHook is on but the model has no PATLoss: set '
            "loss_decode=dict(type='PATLoss') on the decode head, or "
            'remove the hook from custom_hooks.')
    for name, head in reversed(list(head_modules(model))):
        head_losses = [m for m in head.modules() if isinstance(m, PATLoss)]
        kind = _head_kind(head)
        if (name.startswith('decode_head') and head_losses
                and kind not in POINT_HEADS):
            return losses, head_losses[0], PREDICTION_CALLS.get(kind, 'last')
    return losses, losses[0], 'last'


def _any_rank(flag: int) -> int:
    """The largest ``flag`` over all ranks (this rank's when alone)."""
    if get_dist_info()[1] == 1:
        return flag
    value = torch.tensor([flag], dtype=torch.int64)
    all_reduce(value, op='max')
    return int(value.item())


class _Batch:
    """The hook's own record of the batch between its two calls."""

    def __init__(self, sample_idx: Tensor, cells: List[Tensor],
                 exchange: ConfidenceExchange):
        self.sample_idx = sample_idx
        self.cells = cells
        self.exchange = exchange


@HOOKS.register_module()
class PrevPredictionHook(Hook):
    """Keep, per training image, the true-class confidences of the last
    visit, and give them to :class:`PATLoss` as ``confidence='previous'``.

    Args:
        grid (tuple[int, int]): Memory cells per image, (rows, cols); each
            image, whatever its size, is divided into this grid. The memory
            takes ``rows * cols`` bytes per training image on the device of
            the model (and in each checkpoint). Default: (128, 128).
        memory_dir (str, optional): Where this node writes its copy of the
            memory (``memory.u8``, ``memory.json``) and the lock that keeps a
            second training run out. Default:
            ``<work_dir>/prev_prediction_memory``.
        log_interval (int): Every this many iterations, log the filled
            fraction of the memory and the mean confidence written per
            class. Default: 50.
        strict_resume (bool): On ``--resume``, refuse (raise) when the
            checkpoint holds no memory snapshot or a corrupt one. ``False``
            warns and starts with an empty memory. A snapshot that does not
            match the dataset is always refused. Default: True.
        vis_interval (int): Every this many iterations, draw the batch's
            first image, its label, the stored confidences the loss used
            and PAT's weight map (:func:`memory_panel`) through the
            runner's visualizer (``prev_prediction_memory`` in its
            backends). 0 draws nothing. Default: 0.
    """

    priority = 'NORMAL'  # after RuntimeInfoHook, before CheckpointHook

    def __init__(self,
                 grid: Sequence[int] = (128, 128),
                 memory_dir: Optional[str] = None,
                 log_interval: int = 50,
                 strict_resume: bool = True,
                 vis_interval: int = 0):
        if (not isinstance(grid, (list, tuple)) or len(grid) != 2
                or not all(isinstance(g, int) and g >= 1 for g in grid)):
            raise ValueError(
                f'grid must be (rows, cols), two integers >= 1, got {grid!r}')
        if not isinstance(log_interval, int) or log_interval < 1:
            raise ValueError(
                f'log_interval must be an integer >= 1, got {log_interval!r}')
        if not isinstance(vis_interval, int) or vis_interval < 0:
            raise ValueError(
                f'vis_interval must be an integer >= 0, got {vis_interval!r}')
        self.vis_interval = vis_interval
        self.grid = tuple(grid)
        self.memory_dir = memory_dir
        self.log_interval = log_interval
        self.strict_resume = strict_resume
        self.memory: Optional[PredictionMemory] = None
        self._losses: List[PATLoss] = []
        self._writer: Optional[PATLoss] = None
        self._keep = 'last'
        self._lock: Optional[DirectoryLock] = None
        self._checkpoint_entry: Optional[Dict] = None
        self._batch: Optional[_Batch] = None
        self._class_sums = self._class_pixels = None

    # -- set-up -------------------------------------------------------------
    def before_run(self, runner) -> None:
        twins = [h for h in runner.hooks if isinstance(h, PrevPredictionHook)]
        if len(twins) > 1:
            raise ValueError(
                f'PrevPredictionHook is listed {len(twins)} times in '
                'custom_hooks: each would keep its own prediction memory and '
                'write it every iteration. Keep one entry (check the '
                "custom_hooks of the config's _base_ files too).")
        if runner.cfg:  # a runner built from a config (not from objects)
            check_pat_applies(runner.cfg)
        # Runner.train() builds its train loop before this call; val() and
        # test() do not (and need no training set)
        if isinstance(runner._train_loop, BaseLoop):
            check_resume(runner, runner.logger)
            self._complete_pipeline(runner)

    def _complete_pipeline(self, runner) -> None:
        """Give the training loader the pixel origins before it is read.

        MMEngine builds the train loop, and with it the loader (whose
        iteration-based loop forks its workers at once), before any hook
        runs. If the built pipeline lacks the origins, they are added to
        the config's train loader and the loop is built again from it;
        the loop built first is dropped unread, and its workers end.
        """
        dataset = _base_dataset(runner.train_dataloader.dataset)
        transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms',
                             None)
        if transforms is None:
            raise ValueError(
                'PrevPredictionHook needs the training set\'s pipeline '
                '(train_dataloader.dataset.pipeline) to track where each '
                'pixel comes from; this dataset has none.')
        if carries_pixel_origins(transforms):
            return
        loader_cfg = runner.cfg.get('train_dataloader')
        if not loader_cfg or not runner.cfg.get('train_cfg'):
            raise ValueError(
                'The training pipeline does not carry the pixel origins, and '
                'the runner has no config to build its loader again from. '
                "Add dict(type='LoadPixelOrigins') right after "
                "dict(type='LoadAnnotations') and use dict(type="
                "'PackSegInputsWithOrigins') in place of PackSegInputs.")
        loader_cfg = copy.deepcopy(loader_cfg)
        changes = add_pixel_origins(pipeline_config(loader_cfg['dataset']))
        rebuild_train_loop(runner, loader_cfg)
        runner.logger.info(
            'PrevPredictionHook: added to the training pipeline: '
            f'{"; ".join(changes)}. The train loop was built again with it '
            '(to skip that, put these transforms in the config).')

    def before_train(self, runner) -> None:
        self._losses, self._writer, keep = find_pat_losses(runner.model)
        self._keep = keep
        dataset = _base_dataset(runner.train_dataloader.dataset)
        if not carries_pixel_origins(dataset.pipeline.transforms):
            raise ValueError(
                'the training pipeline lost the pixel origins after '
                'PrevPredictionHook added them (did another hook replace '
                'the train loader?)')
        num_classes = len(dataset.metainfo.get('classes') or ()) or -1
        device = next(unwrap(runner.model).parameters()).device
        meta = PredictionMemory.make_meta(
            len(dataset), self.grid, num_classes, dataset_fingerprint(dataset))
        self.memory = PredictionMemory(meta, device)
        self.memory_dir = self.memory_dir or osp.join(
            runner.work_dir, 'prev_prediction_memory')
        self._lock = DirectoryLock(self.memory_dir, runner.experiment_name)
        # every rank holds the whole memory; the first process of the run
        # to take a folder's lock writes it (one per node, or one for nodes
        # that share the folder)
        self._lock.acquire(runner.logger)
        self._class_sums = torch.zeros(max(num_classes, 1), device=device)
        self._class_pixels = torch.zeros_like(self._class_sums)
        if runner.iter > 0:
            self._restore(runner)
        runner.logger.info(
            f'PrevPredictionHook: memory of {meta["num_images"]} images x '
            f'{self.grid[0]}x{self.grid[1]} cells '
            f'({self.memory.nbytes / 2**20:.1f} MiB on {device}; this node '
            f'writes it to {self.memory_dir}), feeding '
            f'{len(self._losses)} PATLoss module(s)')

    # -- resume ------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: Dict) -> None:
        # load_from and tools/test.py land here too: only a resumed run
        # (iter > 0 in before_train) uses the snapshot.
        from_plain(checkpoint)
        self._checkpoint_entry = checkpoint.get(CHECKPOINT_KEY)

    def _restore(self, runner) -> None:
        error, status = None, 0
        try:
            if self._checkpoint_entry is None:
                raise MemorySnapshotError(
                    'the checkpoint holds no prediction-memory snapshot (it '
                    'was saved without PrevPredictionHook)')
            self.memory.load_state_dict(self._checkpoint_entry)
        except MemorySnapshotError as e:
            error, status = e, 1
        except (MemoryMismatchError, KeyError, TypeError) as e:
            error, status = e, 2
        self._checkpoint_entry = None
        # decided together, so that no rank goes on alone and waits
        worst = _any_rank(status)
        if worst == 1 and not self.strict_resume:
            self.memory.clear()
            runner.logger.warning(
                f'{error or "another rank could not restore its memory"}; '
                'the prediction memory starts empty (strict_resume=False).')
        elif worst:
            if error is None:
                raise RuntimeError(
                    'another rank could not restore the prediction memory '
                    'from the checkpoint; its log says why.')
            if status == 1:
                raise MemorySnapshotError(
                    f'{error}. Resume from a checkpoint saved with '
                    'PrevPredictionHook, or set PrevPredictionHook('
                    'strict_resume=False) to go on with an empty memory.'
                ) from error
            raise error
        runner.logger.info(
            f'PrevPredictionHook: memory restored at iteration {runner.iter} '
            f'({self.memory.filled_fraction():.1%} of the cells filled)')

    def before_save_checkpoint(self, runner, checkpoint: Dict) -> None:
        to_plain(checkpoint)
        if self.memory is None:
            return
        checkpoint[CHECKPOINT_KEY] = self.memory.state_dict()
        if self._lock is not None and self._lock.owned:
            self.memory.save(self.memory_dir)

    # -- every iteration ---------------------------------------------------
    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[Dict] = None) -> None:
        samples = data_batch['data_samples']
        indices = [sample.sample_idx for sample in samples]
        if min(indices) < 0 or max(indices) >= self.memory.num_images:
            raise ValueError(
                f'sample_idx {indices} outside the training set of '
                f'{self.memory.num_images} images: PrevPredictionHook needs '
                'the training set itself (no ConcatDataset or sampler that '
                'invents indices).')
        device = self.memory.device
        with self.memory.one_cpu_thread():
            cells = []
            for sample in samples:
                origin = sample.pixel_origin.data.to(device, non_blocking=True)
                # the data preprocessor then finds them on the device already
                sample.pixel_origin.data = origin
                cells.append(self.memory.cells(origin, sample.origin_shape))
            sample_idx = torch.tensor(indices).to(device, non_blocking=True)
            exchange = ConfidenceExchange(
                self.memory.read(sample_idx, cells), self._writer, self._keep)
        self._batch = _Batch(sample_idx, cells, exchange)
        for loss in self._losses:
            loss.exchange = exchange

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[Dict] = None,
                         outputs: Optional[Dict] = None) -> None:
        batch, self._batch = self._batch, None
        for loss in self._losses:
            loss.exchange = None
        exchange = batch.exchange if batch is not None else None
        if exchange is None or exchange.current is None:
            return
        self._log_statistics(runner, exchange)
        if self.vis_interval and self.every_n_train_iters(
                runner, self.vis_interval):
            self._draw(runner, data_batch, exchange)
        with self.memory.one_cpu_thread():
            rows = self.memory.cell_means(batch.sample_idx, batch.cells,
                                          exchange.current)
            sample_idx, rows = self._from_all_ranks(runner, batch.sample_idx,
                                                    rows)
            self.memory.write(sample_idx, rows)
        if self.every_n_train_iters(runner, self.log_interval):
            self._log_memory(runner)

    def _log_statistics(self, runner, exchange: ConfidenceExchange) -> None:
        """The share of valid pixels that had a stored confidence, and the
        sums behind the mean confidence written per class."""
        current, label = exchange.current, exchange.label
        previous = exchange.previous_batch(current.shape)
        valid = current >= 0
        known = valid & (previous >= 0) if previous is not None else (
            torch.zeros_like(valid))
        # RuntimeInfoHook has read the losses already, so the device is
        # idle: reading two numbers back costs no extra wait
        hits, pixels = torch.stack([known.sum(), valid.sum()]).tolist()
        runner.message_hub.update_scalar('train/memory_hit',
                                         hits / max(pixels, 1))
        num_classes = len(self._class_sums)
        # the extra last bin collects the ignored pixels
        index = torch.where(valid, label.long(), num_classes).reshape(-1)
        bins = current.new_zeros(num_classes + 1)
        self._class_sums += bins.scatter_add(
            0, index, current.clamp(min=0).reshape(-1))[:num_classes]
        self._class_pixels += bins.scatter_add(
            0, index, valid.reshape(-1).float())[:num_classes]

    def _from_all_ranks(self, runner, sample_idx: Tensor,
                        rows: Tensor) -> Tuple[Tensor, Tensor]:
        """Every rank's new grid rows and their sample indices, in rank
        order (this rank's alone without distributed training).

        Each rank sends one uint8 block: its rows, each followed by the
        8 bytes of its int64 sample index, padded to the loader's batch size
        (all ranks send the same shape) with rows addressed to the memory's
        padding index.
        """
        if get_dist_info()[1] == 1:
            return sample_idx, rows
        size = max(runner.train_dataloader.batch_size or 0, len(sample_idx))
        pad = size - len(sample_idx)
        if pad:
            sample_idx = torch.cat([
                sample_idx,
                sample_idx.new_full((pad, ), self.memory.padding_index)
            ])
            rows = torch.cat([rows, rows.new_zeros((pad, rows.shape[1]))])
        block = torch.cat([rows, sample_idx.view(torch.uint8).view(size, 8)],
                          dim=1)
        blocks = torch.cat(all_gather(block)).to(rows.device)
        return (blocks[:, -8:].contiguous().view(torch.int64).view(-1),
                blocks[:, :-8].contiguous())

    def _draw(self, runner, data_batch: Dict,
              exchange: ConfidenceExchange) -> None:
        sample = data_batch['data_samples'][0]
        label = sample.gt_sem_seg.data[0]
        h, w = exchange.previous[0].shape
        panel = memory_panel(
            data_batch['inputs'][0], label[:h, :w], exchange.previous[0],
            exchange.current[0, :h, :w], self.memory.meta['num_classes'],
            self._writer.curve,
            (runner.train_dataloader.dataset.metainfo or {}).get('palette'))
        runner.visualizer.add_image('prev_prediction_memory', panel,
                                    step=runner.iter + 1)

    def _log_memory(self, runner) -> None:
        filled = self.memory.filled_fraction()
        runner.message_hub.update_scalar('train/memory_filled', filled)
        means = (self._class_sums / self._class_pixels).tolist()
        classes = (runner.train_dataloader.dataset.metainfo or {}).get(
            'classes') or [str(i) for i in range(len(means))]
        per_class = ', '.join(f'{c}: {m:.2f}' for c, m in zip(classes, means)
                              if m == m)  # NaN: no pixel of the class
        runner.logger.info(
            f'PrevPredictionHook: {filled:.1%} of the memory filled; mean '
            f'confidence written per class over the last '
            f'{self.log_interval} iterations: {per_class}')
        # one curve per class in the visualizer's backends (TensorBoard...)
        runner.visualizer.add_scalars(
            {f'memory_confidence/{c}': m
             for c, m in zip(classes, means) if m == m},
            step=runner.iter + 1)
        self._class_sums.zero_()
        self._class_pixels.zero_()

    # -- the end -----------------------------------------------------------
    def after_train(self, runner) -> None:
        if self._lock is not None and self._lock.owned:
            self.memory.save(self.memory_dir)
        self._release()

    def after_run(self, runner) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
