"""Give a run's train loop a completed training pipeline before it reads.

MMEngine builds the train loop (and, for the iteration-based loop, forks
the loader's workers) before any hook runs, and has no hook point between
the runner's config and that loop. :class:`PrevPredictionHook` completes
the config's train loader (:func:`pipeline_config` finds its pipeline) and
:func:`rebuild_train_loop` builds the loop again from it.
"""
import copy
from typing import Dict

from mmengine.registry import LOOPS


def pipeline_config(dataset_cfg: Dict) -> list:
    """The ``pipeline`` list of a dataset config, through wrappers such as
    ``RepeatDataset`` that keep their inner dataset under ``dataset``."""
    while 'pipeline' not in dataset_cfg and isinstance(
            dataset_cfg.get('dataset'), dict):
        dataset_cfg = dataset_cfg['dataset']
    if 'pipeline' not in dataset_cfg:
        raise ValueError(
            'PrevPredictionHook cannot find the pipeline in the config of '
            'train_dataloader.dataset: add the pixel-origin transforms to it '
            "yourself (dict(type='LoadPixelOrigins') right after "
            "LoadAnnotations, dict(type='PackSegInputsWithOrigins') in place "
            'of PackSegInputs).')
    return dataset_cfg['pipeline']


def rebuild_train_loop(runner, loader_cfg: Dict) -> None:
    """Build the runner's train loop again, on ``loader_cfg``.

    MMEngine has no hook point between the runner's config and the train
    loop it builds from it; this does what ``Runner.build_train_loop``
    does with a loop config, with the completed loader, and hands the loop
    to the runner where it keeps it. The loop built first was never read.
    """
    loop_cfg = copy.deepcopy(runner.cfg['train_cfg'])
    if 'type' not in loop_cfg:  # MMEngine's shorthand
        by_epoch = loop_cfg.pop('by_epoch')
        loop_cfg['type'] = ('EpochBasedTrainLoop'
                            if by_epoch else 'IterBasedTrainLoop')
    runner._train_loop = LOOPS.build(
        loop_cfg, default_args=dict(runner=runner, dataloader=loader_cfg))
