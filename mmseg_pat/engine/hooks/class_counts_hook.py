"""ClassCountsHook: fill in ``class_counts='train_set'`` during the run.

The long-tail losses (BLV, logit adjustment, class-weighted cross-entropy)
and ``LongTailIoUMetric`` take the training set's class pixel counts. A
config says ``class_counts='train_set'``; this hook supplies them, under any
entry point (this project's tools, MMSeg's ``tools/train.py`` and
``tools/test.py``, ``mim train mmseg``, ``Runner.from_cfg`` in a notebook):

* training: the training set is counted once (MMEngine's progress bar,
  ``nproc`` processes, rank 0 only) and cached in the work dir under a key
  of the dataset's settings and its label files' names, sizes and
  modification times, so a changed dataset is counted again; the heads'
  ``num_classes`` are checked against the training set first;
* every checkpoint records the counts, so evaluating a checkpoint
  (``Runner.test()``, ``Runner.val()``) takes them from it and does not
  need the training set; a checkpoint without them falls back to counting.
"""
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import DefaultScope
from mmengine.runner import BaseLoop
from mmseg.registry import DATASETS, HOOKS

from mmseg_pat.datasets.class_statistics import cached_class_counts
from mmseg_pat.utils.class_counts import ClassCountsUser
from mmseg_pat.utils.dist import from_rank_zero
from mmseg_pat.utils.model_heads import head_modules, unwrap

CHECKPOINT_KEY = 'class_counts'


def _users(runner) -> List[ClassCountsUser]:
    """Every loss of the model and metric of a built loop that takes
    class counts."""
    found = [m for m in unwrap(runner.model).modules()
             if isinstance(m, ClassCountsUser)]
    # the runner builds its loops lazily: only those already built count
    for loop in (runner._train_loop, runner._val_loop, runner._test_loop):
        evaluator = getattr(loop, 'evaluator', None) if isinstance(
            loop, BaseLoop) else None
        found += [m for m in getattr(evaluator, 'metrics', [])
                  if isinstance(m, ClassCountsUser)]
    return found


def check_heads_match(model, classes) -> None:
    """Refuse heads whose number of classes is not the training set's.

    Raises:
        ValueError: Naming the head, both numbers and the classes.
    """
    for name, head in head_modules(model):
        num_classes = getattr(head, 'num_classes', None)
        if num_classes is not None and num_classes != len(classes):
            raise ValueError(
                f'model.{name}.num_classes is {num_classes} but the '
                f'training set has {len(classes)} classes: '
                f'{tuple(classes)}. Set model.{name}.num_classes='
                f"{len(classes)} (or the dataset's metainfo classes).")


@HOOKS.register_module()
class ClassCountsHook(Hook):
    """Supply the training set's class pixel counts to every loss and metric
    configured with ``class_counts='train_set'``.

    Args:
        cache_dir (str, optional): Where the counts are cached as JSON.
            Default: the work dir.
        nproc (int): Processes that read the label maps when counting.
            Default: 4.
    """

    priority = 'VERY_HIGH'  # before anything uses the counts

    def __init__(self, cache_dir: Optional[str] = None, nproc: int = 4):
        if not isinstance(nproc, int) or nproc < 1:
            raise ValueError(f'nproc must be an integer >= 1, got {nproc!r}')
        self.cache_dir = cache_dir
        self.nproc = nproc
        self.counts: Optional[np.ndarray] = None
        self.classes: Optional[list] = None
        self._from_checkpoint: Optional[Dict] = None

    def after_load_checkpoint(self, runner, checkpoint: Dict) -> None:
        self._from_checkpoint = (checkpoint.get('meta') or {}).get(
            CHECKPOINT_KEY)

    def before_train(self, runner) -> None:
        dataset = runner.train_dataloader.dataset
        check_heads_match(unwrap(runner.model), dataset.metainfo['classes'])
        self._count(runner, dataset)
        self._supply(runner)

    def before_val(self, runner) -> None:
        self._supply_for_evaluation(runner)

    def before_test(self, runner) -> None:
        self._supply_for_evaluation(runner)

    def before_save_checkpoint(self, runner, checkpoint: Dict) -> None:
        if self.counts is not None:
            checkpoint.setdefault('meta', {})[CHECKPOINT_KEY] = dict(
                classes=list(self.classes), counts=self.counts.tolist())

    def _supply_for_evaluation(self, runner) -> None:
        if not any(u.class_counts_pending for u in _users(runner)):
            return
        if self.counts is None and self._from_checkpoint is not None:
            self.classes = list(self._from_checkpoint['classes'])
            self.counts = np.asarray(self._from_checkpoint['counts'],
                                     dtype=np.int64)
            runner.logger.info('ClassCountsHook: class pixel counts of the '
                               'training set taken from the checkpoint')
        if self.counts is None:
            self._count(runner, self._build_train_set(runner))
        self._supply(runner)

    def _build_train_set(self, runner):
        dataset_cfg = (runner.cfg.get('train_dataloader') or {}).get(
            'dataset')
        if dataset_cfg is None:
            raise ValueError(
                "class_counts='train_set' needs the training set's counts: "
                'evaluate a checkpoint saved with ClassCountsHook, or give '
                'the config a train_dataloader, or pass the counts (a list '
                'or a JSON file from tools/analysis/class_statistics.py).')
        try:
            with DefaultScope.overwrite_default_scope(
                    runner.cfg.get('default_scope', 'mmseg')):
                return DATASETS.build(dataset_cfg)
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"{error}\nclass_counts='train_set' needs the training "
                'set when the checkpoint does not record its counts; give '
                'the counts instead (a list or a JSON file from '
                'tools/analysis/class_statistics.py).') from error

    def _count(self, runner, dataset) -> None:
        """Count on rank 0 (or read the cache) and share with the others."""
        if not any(u.class_counts_pending for u in _users(runner)):
            return
        self.counts, _ = from_rank_zero(lambda: cached_class_counts(
            dataset, self.cache_dir or runner.work_dir, self.nproc,
            logger=runner.logger))
        self.classes = list(dataset.metainfo['classes'])

    def _supply(self, runner) -> None:
        if self.counts is None:
            return
        device = next(unwrap(runner.model).parameters()).device
        for user in _users(runner):
            if user.class_counts_pending:
                user.set_class_counts(self.counts)
                if isinstance(user, torch.nn.Module):
                    user.to(device)
