"""Train configs that differ only in the loss, over seeds, and compare them.

The evidence study of PAT (arXiv 2404.05393; ``docs/method.md``, section
6): does it help the rare classes, and at what cost? Every method of
:data:`METHODS` is put on every head of one base config, trained with the
project's ``tools/train.py`` (one subprocess per run: runs are isolated,
and easy to spread over GPUs or cores), evaluated by ``LongTailIoUMetric``
and read back from the work dir (:func:`~mmseg_pat.analysis.runs.read_run`).
:func:`run_study` writes into its output folder:

* ``runs.csv``: one row per run (method, seed, variant, status, every
  metric including ``IoU.<class>``, seconds per iteration, final training
  loss, work dir, config, class counts, checkpoint);
* ``results.csv`` and ``results.md``: mean ± std over the seeds of each
  method, and its gain over the baseline paired by seed
  (:func:`write_results`, which rebuilds them from a ``runs.csv`` too);
* ``curves.csv`` and ``curves.md`` when the runs validate every N
  iterations (:func:`write_curves`): the learning curves and the gain at
  each evaluation;
* ``memory_size.md`` when the variants are memory grids
  (:func:`memory_sizes`);
* the plots of :func:`~mmseg_pat.analysis.plots.plot_study` and
  ``COMMAND.txt`` (command line, wall time, machine).

Variants make one study per setting, each paired with its own baseline:
the imbalance ratio of the generated data, the breed held out of
Oxford-IIIT Pet (:func:`set_breed_fold`), PrevPredictionHook's grid
(:func:`set_memory_grid`; the baseline keeps no memory and runs once).

The presets' configs and ``tools/train.py`` are those of the checkout the
package is installed from (editable, as ``make setup`` installs it).
"""
import copy
import csv
import math
import os
import os.path as osp
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS

from mmseg_pat.datasets import cached_class_counts
from mmseg_pat.datasets.oxford_pet import split_names
from mmseg_pat.stack import load_config
from mmseg_pat.utils.class_prior import FROM_TRAIN_SET
from mmseg_pat.utils.launch import iter_heads

from .plots import plot_study
from .runs import (by_iteration, collect_curves, evaluation_report, finished,
                   mean_std, methods_of, paired_gains, read_run, slug,
                   variant_of)

PROJECT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: The compared losses: name -> loss settings, put on every head (an
#: auxiliary head keeps its loss_weight). A PATLoss whose confidence is
#: 'previous' (the default) also switches PrevPredictionHook on.
METHODS = {
    'ce': dict(type='CrossEntropyLoss', use_sigmoid=False),
    'focal': dict(type='SoftmaxFocalLoss'),
    'wce': dict(type='WeightedCrossEntropyLoss', class_counts='train_set'),
    'blv': dict(type='BLVLoss', class_counts='train_set'),
    'la': dict(type='LogitAdjustedLoss', class_counts='train_set'),
    # PATLoss's defaults (curve 'ina', confidence 'previous', homogenize
    # 'none'), then one option changed at a time.
    'pat': dict(type='PATLoss'),
    'pat_inap': dict(type='PATLoss', curve='inap'),
    'pat_current': dict(type='PATLoss', confidence='current'),
    'pat_class': dict(type='PATLoss', homogenize='class'),
    'pat_sqrt': dict(type='PATLoss', homogenize='sqrt'),
    # The authors' raw form: current confidence, gradient through the
    # weight, no homogenization, no normalisation.
    'pat_authors': dict(
        type='PATLoss',
        confidence='current',
        detach_weight=False,
        homogenize='none',
        normalize='none'),
}

DEMO_CONFIG = 'configs/demo/segformer_long_tail_shapes_pat.py'
# Larger than the demo's 160 / 40 images, so that at imbalance ratio 100
# the rarest class still has a few instances in the validation set.
_STUDY_SHAPES = dict(num_train=800, num_val=400)

#: Variant keys the study applies itself (any other key of a variant is a
#: parameter of a generated dataset, such as ``imbalance_ratio``):
#: ``held_out_breed`` trains on the other breeds of the preset's
#: ``breeds`` and evaluates on this one (:func:`set_breed_fold`);
#: ``memory_grid`` is PrevPredictionHook's grid, N (N x N cells) or
#: (rows, cols) (:func:`set_memory_grid`).
HELD_OUT_BREED = 'held_out_breed'
MEMORY_GRID = 'memory_grid'
#: The breeds of the shared Oxford-IIIT Pet sample (its PROVENANCE.md).
PET_BREEDS = ('Abyssinian', 'Bengal', 'american_bulldog')
#: Memory grids (cells a side) of the ``oxfordpet_grid`` preset.
MEMORY_GRIDS = (16, 32, 64, 128, 256)

# The real Oxford-IIIT Pet sample, SegFormer MiT-B0 from random init, at
# 128 x 128 (each photograph resized to fit 160 x 160 first).
_OXFORD_PET = dict(
    config='configs/_base_/experiments/segformer_oxfordpet.py',
    sample='oxford_pet',
    seeds=(0, 1, 2),
    iters=200,
    shrink=dict(scale=(160, 160), crop=(128, 128), batch_size=4),
    # From random init and for a few hundred iterations, 10x the recipe's
    # learning rate (the head keeps its 10x on top).
    cfg_options={'optim_wrapper.optimizer.lr': 6e-4})
# CE, PAT's defaults and PAT's best setting on this data set.
_PAT_VS_CE = ('ce', 'pat', 'pat_sqrt')

#: Ready studies. Keys: ``config`` (relative to the project), ``data_root``
#: (None: the config's), ``sample`` (instead of ``data_root``: a folder of
#: the real samples, see :func:`samples_dir`), ``methods``, ``seeds``,
#: ``iters`` (None: the config's), ``val_interval`` (validate every this
#: many iterations, for learning curves; None: once, at the end),
#: ``shrink`` (:func:`shrink_config` arguments, skipped with
#: ``shrink=False``), ``generation`` (overrides of a generated dataset's
#: parameters), ``variants`` (one study per variant: generation overrides,
#: each in its own data root, or the keys :data:`HELD_OUT_BREED` and
#: :data:`MEMORY_GRID`), ``breeds`` (those of :data:`HELD_OUT_BREED`
#: folds), ``pool_variants`` (also tabulate all variants together),
#: ``cfg_options``, ``show_log`` (stream the training logs).
PRESETS = {
    'oxfordpet':
    dict(_OXFORD_PET, methods=tuple(METHODS)),
    # Does the gain last? 5x the schedule, validated every 100 iterations.
    'oxfordpet_long':
    dict(_OXFORD_PET, methods=_PAT_VS_CE, iters=1000, val_interval=100),
    # Does it generalise to unseen kinds of images? Leave one breed out.
    'oxfordpet_breeds':
    dict(
        _OXFORD_PET,
        methods=_PAT_VS_CE,
        breeds=PET_BREEDS,
        variants=[{HELD_OUT_BREED: b} for b in PET_BREEDS],
        pool_variants=True),
    # Which memory resolution? CE runs once: it keeps no memory.
    'oxfordpet_grid':
    dict(
        _OXFORD_PET,
        methods=('ce', 'pat'),
        variants=[{MEMORY_GRID: g} for g in MEMORY_GRIDS]),
    'shapes':
    dict(
        config=DEMO_CONFIG,
        data_root='data/long_tail_shapes_study',
        methods=tuple(METHODS),
        seeds=(0, 1, 2),
        iters=400,
        generation=_STUDY_SHAPES),
    'shapes_imbalance':
    dict(
        config=DEMO_CONFIG,
        data_root='data/long_tail_shapes_imbalance',
        methods=('ce', 'pat', 'pat_inap', 'pat_class', 'pat_sqrt', 'blv'),
        seeds=(0, 1, 2),
        iters=400,
        generation=_STUDY_SHAPES,
        variants=[dict(imbalance_ratio=r) for r in (5.0, 25.0, 100.0)]),
    'demo':
    dict(
        config=DEMO_CONFIG,
        methods=('ce', 'pat'),
        seeds=(0, ),
        show_log=True),
}

#: Columns of the results table, in percent except the time (seconds).
SUMMARY_METRICS = ('aAcc', 'mIoU', 'mAcc', 'head_mIoU', 'body_mIoU',
                   'tail_mIoU', 'time_per_iter')
#: Metrics whose gain over the baseline (paired by seed) is tabulated.
GAIN_METRICS = ('mIoU', 'tail_mIoU')
#: The first columns of ``runs.csv``; ``IoU.<class>`` and
#: :data:`PATH_COLUMNS` follow.
RUN_COLUMNS = ('method', 'seed', 'variant', 'status', 'aAcc', 'mIoU',
               'mAcc', 'head_mIoU', 'body_mIoU', 'tail_mIoU', 'head_mAcc',
               'body_mAcc', 'tail_mAcc', 'time_per_iter', 'final_loss',
               'iters')
PATH_COLUMNS = ('work_dir', 'config', 'class_counts', 'checkpoint')
#: The columns of ``curves.csv``: one row per evaluation of each run.
CURVE_COLUMNS = ('method', 'seed', 'variant', 'iter', 'aAcc', 'mIoU',
                 'mAcc', 'head_mIoU', 'body_mIoU', 'tail_mIoU')
#: Training images of the full data sets, and the grid of N cells a side
#: for their images' shape: the memory's size of :func:`memory_sizes`.
FULL_DATASETS = (
    ('Oxford-IIIT Pet trainval', 3680, lambda n: (n, n)),
    ('Cityscapes train', 2975, lambda n: (n, 2 * n)),
)


def samples_dir() -> str:
    """The folder of the real dataset samples (``oxford_pet/``, ...): the
    one named by ``MMSEG_PAT_SAMPLES``, else ``shared/data`` beside the
    project, as for the tests."""
    return osp.abspath(
        os.environ.get('MMSEG_PAT_SAMPLES')
        or osp.join(osp.dirname(PROJECT), 'shared', 'data'))


def preset_data_root(preset: Dict,
                     data_root: Optional[str] = None) -> Optional[str]:
    """The data root of a preset's runs: ``data_root`` (``--data-root``),
    else the preset's; None leaves the config's.

    Raises:
        FileNotFoundError: If the preset trains on a real sample that is
            not in :func:`samples_dir` and no ``data_root`` is given.
    """
    if data_root or 'sample' not in preset:
        return data_root or preset.get('data_root')
    path = osp.join(samples_dir(), preset['sample'])
    if not osp.isdir(path):
        raise FileNotFoundError(
            f'this preset trains on the real {preset["sample"]} sample, '
            f'not found at {path!r}: pass --data-root DIR (a data root laid '
            'out by tools/dataset_converters/), or set MMSEG_PAT_SAMPLES=DIR '
            f'to a folder that holds {preset["sample"]}/')
    return path


def needs_memory(loss: Dict) -> bool:
    """Whether a loss reads the confidences kept by PrevPredictionHook."""
    return (loss['type'] == 'PATLoss'
            and loss.get('confidence', 'previous') == 'previous')


def describe_loss(loss: Dict) -> str:
    """A loss setting as it reads in a config, e.g. ``PATLoss(curve='inap')``.
    """
    args = ', '.join(f'{k}={v!r}' for k, v in loss.items() if k != 'type')
    return f'{loss["type"]}({args})'


def _dataset_cfgs(cfg: Config) -> List[Dict]:
    """The dataset settings of the train, val and test loaders."""
    return [
        cfg[loader].dataset
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        if loader in cfg
    ]


def make_offline(cfg: Config) -> None:
    """Switch pretrained weights off, so that nothing downloads."""
    cfg.model.pretrained = None
    if 'backbone' in cfg.model:
        cfg.model.backbone.init_cfg = None


def shrink_config(cfg: Config, scale: Tuple[int, int], crop: Tuple[int, int],
                  batch_size: int) -> None:
    """Make a config's images small, for CPUs.

    Every ``Resize`` / ``RandomResize`` gets ``scale``, every
    ``RandomCrop`` and the data preprocessor ``crop``; the training batch
    has ``batch_size`` images; data is loaded in the main process.
    """
    cfg.model.data_preprocessor.size = tuple(crop)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(num_workers=0, persistent_workers=False)
        for step in cfg[loader].dataset.pipeline:
            if step['type'] in ('Resize', 'RandomResize'):
                step['scale'] = tuple(scale)
            if step['type'] == 'RandomCrop':
                step['crop_size'] = tuple(crop)
    cfg.train_dataloader.batch_size = batch_size


def set_data(cfg: Config, data_root: str, generation: Dict) -> None:
    """Point every loader at ``data_root`` and override the parameters of a
    generated dataset.

    Raises:
        ValueError: If ``generation`` is not empty and a dataset is not
            generated (has no ``generation`` parameters).
    """
    for dataset in _dataset_cfgs(cfg):
        dataset.data_root = data_root
        if generation:
            if 'generation' not in dataset:
                raise ValueError(
                    f'{dataset.type} is not a generated dataset; generation '
                    f'settings {generation} (imbalance ratios) apply only to '
                    'LongTailShapesDataset.')
            dataset.generation.update(generation)


def set_iterations(cfg: Config,
                   iters: int,
                   val_interval: Optional[int] = None) -> None:
    """Train ``iters`` iterations, validate every ``val_interval`` and at
    the end, and rescale the iteration-based learning-rate schedule to the
    new length.

    Args:
        cfg (Config): The run's config.
        iters (int): Training iterations.
        val_interval (int, optional): Validate every this many iterations
            (a learning curve). Default: None (once, at the end).

    Raises:
        ValueError: If the config does not train by iterations, or
            ``iters`` or ``val_interval`` is below 1.
    """
    if cfg.train_cfg.get('type') != 'IterBasedTrainLoop':
        raise ValueError('the study needs an IterBasedTrainLoop, got '
                         f"{cfg.train_cfg.get('type')}")
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    if val_interval is not None and val_interval < 1:
        raise ValueError(f'val_interval must be >= 1, got {val_interval}')
    scale = iters / cfg.train_cfg.max_iters
    schedulers = cfg.get('param_scheduler') or []
    for scheduler in (schedulers
                      if isinstance(schedulers, list) else [schedulers]):
        if scheduler.get('by_epoch', True):
            raise ValueError('the study rescales iteration-based schedules '
                             f'only, got {scheduler}')
        scheduler.begin = round(scheduler.get('begin', 0) * scale)
        end = min(scheduler.get('end', math.inf), cfg.train_cfg.max_iters)
        scheduler.end = max(round(end * scale), scheduler.begin + 1)
    # MMEngine's IterBasedTrainLoop also validates at the last iteration.
    cfg.train_cfg.update(max_iters=iters, val_interval=val_interval or iters)


def set_method(cfg: Config, loss: Dict) -> None:
    """Put ``loss`` on every head, and PrevPredictionHook on or off.

    An auxiliary head keeps the ``loss_weight`` of its loss. A hook set up
    by the config is kept with its settings (e.g. its grid).
    """
    for _, head in iter_heads(cfg.model):
        old = head.get('loss_decode')
        weight = old.get('loss_weight', 1.0) if isinstance(old, dict) else 1.0
        head.loss_decode = dict(copy.deepcopy(loss), loss_weight=weight)
    hooks = list(cfg.get('custom_hooks') or [])
    memory = [h for h in hooks if h['type'] == 'PrevPredictionHook']
    hooks = [h for h in hooks if h['type'] != 'PrevPredictionHook']
    if needs_memory(loss):
        hooks += memory[:1] or [dict(type='PrevPredictionHook')]
    cfg.custom_hooks = hooks


def set_memory_grid(cfg: Config, grid: Union[int, Sequence[int]]) -> None:
    """Give the config's PrevPredictionHook the grid ``grid``: N (N x N
    cells) or (rows, cols).

    Raises:
        ValueError: If the config has no PrevPredictionHook (its loss keeps
            no memory).
    """
    hooks = [
        h for h in cfg.get('custom_hooks') or []
        if h['type'] == 'PrevPredictionHook'
    ]
    if not hooks:
        raise ValueError(
            f'{MEMORY_GRID}={grid!r} applies to a loss that keeps the memory '
            '(PATLoss with confidence=\'previous\'); this run has no '
            'PrevPredictionHook')
    for hook in hooks:
        hook['grid'] = (grid, grid) if isinstance(grid, int) else tuple(grid)


def breed_of(name: str) -> str:
    """The breed of an Oxford-IIIT Pet image: ``'american_bulldog_10'`` ->
    ``'american_bulldog'``."""
    return name.rsplit('_', 1)[0]


def write_breed_fold(data_root: str, held_out: str,
                     breeds: Optional[Sequence[str]],
                     split_dir: str) -> Tuple[str, str]:
    """Split lists of one leave-one-breed-out fold of Oxford-IIIT Pet.

    Every image of the data root's official lists (``trainval.txt`` and
    ``test.txt``) whose breed is in ``breeds`` goes to the training list,
    except those of ``held_out``, which make the evaluation list.

    Args:
        data_root (str): An Oxford-IIIT Pet data root.
        held_out (str): The breed evaluated on, e.g. ``'Bengal'``.
        breeds (Sequence[str], optional): The breeds of the fold. Default:
            None (every breed in the lists).
        split_dir (str): Where ``train.txt`` and ``test.txt`` are written.

    Returns:
        tuple[str, str]: The absolute paths of the training and the
        evaluation list.

    Raises:
        ValueError: If ``held_out`` is not among ``breeds``, or a list
            would be empty.
    """
    names = []
    for split in ('trainval', 'test'):
        with open(osp.join(data_root, 'annotations', f'{split}.txt')) as f:
            names += split_names(f)
    breeds = list(breeds or dict.fromkeys(map(breed_of, names)))
    if held_out not in breeds:
        raise ValueError(f'{HELD_OUT_BREED}={held_out!r} is not one of the '
                         f'breeds {breeds}')
    lists = dict(
        train=[n for n in names
               if breed_of(n) in breeds and breed_of(n) != held_out],
        test=[n for n in names if breed_of(n) == held_out])
    os.makedirs(split_dir, exist_ok=True)
    paths = []
    for split, members in lists.items():
        if not members:
            raise ValueError(
                f'leaving out {held_out!r}, the {split} list of breeds '
                f'{breeds} in {data_root} would be empty')
        paths.append(osp.abspath(osp.join(split_dir, f'{split}.txt')))
        with open(paths[-1], 'w') as f:
            f.writelines(f'{name}\n' for name in members)
    return paths[0], paths[1]


def set_breed_fold(cfg: Config, held_out: str,
                   breeds: Optional[Sequence[str]], split_dir: str) -> None:
    """Train on the other breeds, evaluate on ``held_out``
    (:func:`write_breed_fold`, lists in ``split_dir``, from the training
    loader's data root)."""
    train, test = write_breed_fold(cfg.train_dataloader.dataset.data_root,
                                   held_out, breeds, split_dir)
    cfg.train_dataloader.dataset.ann_file = train
    for loader in ('val_dataloader', 'test_dataloader'):
        if loader in cfg:
            cfg[loader].dataset.ann_file = test


def _asking_for_train_set_counts(node) -> Iterator[Dict]:
    """Every dict under ``node`` whose ``class_counts`` is ``'train_set'``.
    """
    if isinstance(node, dict):
        if node.get('class_counts') == FROM_TRAIN_SET:
            yield node
        for value in node.values():
            yield from _asking_for_train_set_counts(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _asking_for_train_set_counts(value)


def set_train_set_counts(cfg: Config, cache_dir: str) -> Optional[str]:
    """Give the runs of a study their training set's counts as a file.

    ``ClassCountsHook`` would count the training set in each run's work
    dir; the study counts it once for all its runs instead
    (:func:`~mmseg_pat.datasets.cached_class_counts` in ``cache_dir``) and
    puts the JSON's absolute path wherever the config says
    ``class_counts='train_set'`` (losses, evaluators), so each run's config
    names the counts its plots read.

    Returns:
        str | None: The JSON's path, or None if nothing asked for it.
    """
    holders = [
        holder for key in cfg.keys()
        for holder in _asking_for_train_set_counts(cfg[key])
    ]
    if not holders:
        return None
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmseg')):
        dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    _, path = cached_class_counts(dataset, cache_dir)
    for holder in holders:
        holder['class_counts'] = path
    return path


def variant_name(overrides: Dict) -> str:
    """``'imbalance_ratio=5'`` for ``dict(imbalance_ratio=5.0)``."""
    return ','.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}'
                    for k, v in overrides.items())


def generation_of(variant: Dict) -> Dict:
    """The generated-data parameters of a variant (its other keys)."""
    return {
        k: v
        for k, v in variant.items() if k not in (HELD_OUT_BREED, MEMORY_GRID)
    }


def variant_of_method(variant: Dict, method: str) -> Dict:
    """The variant a method's run belongs to: a memory grid does not apply
    to a method that keeps no memory, which runs once for all grids."""
    if needs_memory(METHODS[method]):
        return dict(variant)
    return {k: v for k, v in variant.items() if k != MEMORY_GRID}


def build_run_config(preset: Dict,
                     method: str,
                     seed: int,
                     variant: Dict,
                     work_dir: str,
                     counts_dir: str,
                     data_root: Optional[str] = None,
                     shrink: bool = True,
                     cfg_options: Optional[Dict] = None,
                     iters: Optional[int] = None,
                     val_interval: Optional[int] = None) -> Config:
    """The full config of one run, class counts filled in.

    Order: the preset's base config, offline, data root and generation
    (each generated variant in its own sub-folder), the breed fold (split
    lists in ``<work_dir>/split/``), shrinking, the preset's then the given
    ``cfg_options``, iterations (evaluations every ``val_interval`` and at
    the end, one checkpoint at the end), the method's loss (last, so that
    options cannot leave another loss on a head) and the memory grid, the
    seed, the class counts (:func:`set_train_set_counts` in
    ``counts_dir``).

    Args:
        preset (dict): One of :data:`PRESETS`.
        method (str): One of :data:`METHODS`.
        seed (int): The run's random seed.
        variant (dict): This run's variant: generation overrides of its
            data, :data:`HELD_OUT_BREED`, :data:`MEMORY_GRID`.
        work_dir (str): The run's work dir.
        counts_dir (str): Where the training set's counts are cached.
        data_root (str, optional): Data root of every loader.
            Default: None (:func:`preset_data_root`).
        shrink (bool): Apply the preset's ``shrink``. Default: True.
        cfg_options (dict, optional): Overrides, ``key: value``.
            Default: None.
        iters (int, optional): Training iterations. Default: None (the
            preset's, else the config's).
        val_interval (int, optional): Validate every this many
            iterations. Default: None (the preset's, else once at the end).
    """
    cfg = load_config(osp.join(PROJECT, preset['config']))
    make_offline(cfg)
    data_root = (preset_data_root(preset, data_root)
                 or cfg.train_dataloader.dataset.data_root)
    generation = generation_of(variant)
    if generation:
        data_root = osp.join(data_root, slug(variant_name(generation)))
    set_data(cfg, osp.abspath(data_root),
             dict(preset.get('generation') or {}, **generation))
    if HELD_OUT_BREED in variant:
        set_breed_fold(cfg, variant[HELD_OUT_BREED], preset.get('breeds'),
                       osp.join(work_dir, 'split'))
    if preset.get('shrink') and shrink:
        shrink_config(cfg, **preset['shrink'])
    cfg.merge_from_dict(preset.get('cfg_options') or {})
    cfg.merge_from_dict(cfg_options or {})
    iters = iters or preset.get('iters')
    val_interval = val_interval or preset.get('val_interval')
    if iters or val_interval:
        set_iterations(cfg, iters or cfg.train_cfg.max_iters, val_interval)
    max_iters = cfg.train_cfg.max_iters
    cfg.default_hooks.checkpoint.update(
        interval=max_iters, by_epoch=False, save_optimizer=False)
    # Often enough for a median time per iteration after the warm-up.
    cfg.default_hooks.logger.interval = max(
        1, min(max_iters // 20, cfg.default_hooks.logger.interval))
    set_method(cfg, METHODS[method])
    if MEMORY_GRID in variant:
        set_memory_grid(cfg, variant[MEMORY_GRID])
    cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)
    cfg.work_dir = osp.abspath(work_dir)
    set_train_set_counts(cfg, counts_dir)
    return cfg


def plan_runs(preset: Dict,
              runs_root: str,
              methods: Optional[Sequence[str]] = None,
              seeds: Optional[Sequence[int]] = None,
              variants: Optional[Sequence[Dict]] = None,
              **config_options) -> List[Dict]:
    """Write the config of every run; the list of runs to train.

    Args:
        preset (dict): One of :data:`PRESETS`.
        runs_root (str): Folder of the runs' work dirs,
            ``<variant>/<method>/seed<seed>``, and of the class counts.
        methods, seeds, variants: Default: None (the preset's). A method
            that keeps no memory runs once for all memory grids
            (:func:`variant_of_method`).
        config_options: ``data_root``, ``shrink``, ``cfg_options``,
            ``iters`` and ``val_interval`` of :func:`build_run_config`.

    Returns:
        list[dict]: ``method``, ``seed``, ``variant`` (its name), ``label``,
        ``work_dir`` and ``config_path`` of each run.

    Raises:
        ValueError: If a method is not in :data:`METHODS`.
    """
    variants = variants or preset.get('variants') or [{}]
    methods = methods or preset['methods']
    seeds = seeds or preset['seeds']
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f'unknown methods {unknown}; choose from '
                         f'{list(METHODS)}')
    counts_dir = osp.join(runs_root, 'class_counts')
    runs = []
    for variant in variants:
        for seed in seeds:
            for method in methods:
                run_variant = variant_of_method(variant, method)
                name = variant_name(run_variant)
                label = '/'.join(p for p in (name, method, f'seed{seed}')
                                 if p)
                if any(run['label'] == label for run in runs):
                    continue
                work_dir = osp.join(runs_root, slug(name), method,
                                    f'seed{seed}')
                cfg = build_run_config(preset, method, seed, run_variant,
                                       work_dir, counts_dir, **config_options)
                os.makedirs(work_dir, exist_ok=True)
                config_path = osp.join(work_dir, 'config.py')
                cfg.dump(config_path)
                runs.append(
                    dict(
                        method=method,
                        seed=seed,
                        variant=name,
                        label=label,
                        work_dir=cfg.work_dir,
                        config_path=config_path))
    return runs


def _train(config_path: str, work_dir: str, threads: int,
           show_log: bool) -> int:
    """Train one run with tools/train.py in a subprocess; its exit code."""
    env = dict(os.environ)
    if threads > 0:
        # One thread per run: on a shared machine, a second OpenMP thread
        # that waits for a busy core slows every operation down many times.
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [
        sys.executable,
        osp.join(PROJECT, 'tools', 'train.py'), config_path, '--work-dir',
        work_dir
    ]
    if show_log:
        return subprocess.call(command, env=env)
    with open(osp.join(work_dir, 'train_stdout.log'), 'w') as log:
        return subprocess.call(
            command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _log_tail(work_dir: str, lines: int = 15) -> str:
    path = osp.join(work_dir, 'train_stdout.log')
    if not osp.isfile(path):
        return ''
    with open(path) as f:
        return ''.join(f.readlines()[-lines:])


def _has_evaluation(work_dir: str) -> bool:
    try:
        read_run(work_dir)
    except (FileNotFoundError, ValueError):
        return False
    return True


def run_one(run: Dict, threads: int, show_log: bool,
            skip_existing: bool) -> Dict:
    """Train (unless done and ``skip_existing``) and read back one run.

    Returns:
        dict: The run's row: ``method``, ``seed``, ``variant``, ``status``
        (``'ok'``, ``'diverged'`` when the last training loss is not
        finite, or ``'failed'`` when the training exits with an error or
        leaves no evaluation) and the metrics of
        :func:`~mmseg_pat.analysis.runs.read_run`.
    """
    row = dict(method=run['method'], seed=run['seed'], variant=run['variant'])
    work_dir = run['work_dir']
    error = None
    if not (skip_existing and _has_evaluation(work_dir)):
        start = time.time()
        code = _train(run['config_path'], work_dir, threads, show_log)
        print(f'[{run["label"]}] finished in {time.time() - start:.0f} s '
              f'(exit code {code})', flush=True)
        if code != 0:  # the work dir may hold an older run's results
            error = f'training exited with code {code}'
    if error is None:
        try:
            result = read_run(work_dir)
        except (FileNotFoundError, ValueError) as exception:
            error = str(exception)
    if error is not None:
        print(f'[{run["label"]}] FAILED: {error}\n{_log_tail(work_dir)}',
              flush=True)
        return dict(row, status='failed', work_dir=work_dir)
    status = 'ok' if math.isfinite(result['final_loss']) else 'diverged'
    return dict(row, status=status, **result)


def summarize(rows: Sequence[Dict],
              metrics: Sequence[str] = SUMMARY_METRICS,
              baseline: Optional[str] = 'ce') -> List[Dict]:
    """Mean ± std over the seeds of each (variant, method).

    Failed runs (no evaluation) are counted but not averaged; diverged runs
    are averaged (their metrics are real) and counted. NaN values (e.g. a
    group with no class in the evaluation set) are left out of a mean. The
    std is the sample standard deviation (ddof=1), 0 for a single run.

    Args:
        rows (Sequence[dict]): Per-run rows as written to ``runs.csv``.
        metrics (Sequence[str]): The metrics to average.
            Default: :data:`SUMMARY_METRICS`.
        baseline (str, optional): Method whose results the
            :data:`GAIN_METRICS` gains are measured from, paired by seed
            (:func:`~mmseg_pat.analysis.runs.paired_gains`).
            Default: ``'ce'``.

    Returns:
        list[dict]: In order of first appearance, ``variant``, ``method``,
        ``runs``, ``failed``, ``diverged``, ``<metric>_mean`` and
        ``<metric>_std``, and ``gain_<metric>_mean`` / ``_std`` / ``_pairs``
        (the seeds paired) where the baseline ran.
    """
    groups: Dict[Tuple[str, str], List[Dict]] = {}
    for row in rows:
        key = (variant_of(row), str(row['method']))
        groups.setdefault(key, []).append(row)
    gains = {
        metric: paired_gains(rows, baseline, metric)
        for metric in GAIN_METRICS
    } if baseline else {}
    summary = []
    for (variant, method), members in groups.items():
        done = finished(members)
        entry = dict(
            variant=variant,
            method=method,
            runs=len(members),
            failed=len(members) - len(done),
            diverged=sum(r.get('status') == 'diverged' for r in members))
        for metric in metrics:
            entry[f'{metric}_mean'], entry[f'{metric}_std'] = mean_std(
                [float(r.get(metric, math.nan)) for r in done])
        for metric, by_group in gains.items():
            if (variant, method) in by_group and method != baseline:
                mean, std, pairs = by_group[(variant, method)]
                entry[f'gain_{metric}_mean'] = mean
                entry[f'gain_{metric}_std'] = std
                entry[f'gain_{metric}_pairs'] = pairs
        summary.append(entry)
    return summary


def _write_csv(path: str, rows: Sequence[Dict],
               first: Sequence[str] = ()) -> None:
    columns = [c for c in first if any(c in r for r in rows)]
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval='')
        writer.writeheader()
        writer.writerows(rows)


def write_runs_csv(path: str, rows: Sequence[Dict]) -> None:
    """Write the per-run table: :data:`RUN_COLUMNS`, then ``IoU.<class>``,
    then :data:`PATH_COLUMNS`."""
    iou = []
    for row in rows:
        iou += [k for k in row if k.startswith('IoU.') and k not in iou]
    columns = (*RUN_COLUMNS, *iou, *PATH_COLUMNS)
    ordered = [{k: row[k] for k in columns if k in row} for row in rows]
    _write_csv(path, ordered, first=columns)


def _mean_std(entry: Dict, key: str, digits: int) -> str:
    mean, std = entry.get(f'{key}_mean'), entry.get(f'{key}_std')
    if mean is None or math.isnan(mean):
        return 'n/a'
    # a spread needs two values: two runs, or two seeds paired with CE
    values = entry.get(f'{key}_pairs', entry['runs'] - entry['failed'])
    if values > 1:
        return f'{mean:.{digits}f} ± {std:.{digits}f}'
    return f'{mean:.{digits}f}'


def markdown_table(summary: Sequence[Dict],
                   baseline: Optional[str] = 'ce') -> str:
    """The results table in Markdown: one row per (variant, method)."""
    has_variant = any(e['variant'] for e in summary)
    header = (['variant'] if has_variant else []) + [
        'method', 'loss', 'runs', 'aAcc', 'mIoU', 'mAcc', 'head mIoU',
        'body mIoU', 'tail mIoU'
    ]
    gain = baseline and any(f'gain_{GAIN_METRICS[0]}_mean' in e
                            for e in summary)
    if gain:
        header += [f'Δ {m.replace("_", " ")} vs {baseline}'
                   for m in GAIN_METRICS]
    header.append('s / iter')
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join(['---'] * (2 + has_variant) +
                            ['---:'] * (len(header) - 2 - has_variant)) + '|']
    for entry in summary:
        runs = str(entry['runs'])
        notes = [f'{entry[k]} {k}' for k in ('failed', 'diverged')
                 if entry[k]]
        if notes:
            runs += f' ({", ".join(notes)})'
        loss = METHODS.get(entry['method'])
        cells = ([entry['variant']] if has_variant else []) + [
            entry['method'], f'`{describe_loss(loss)}`' if loss else '', runs
        ]
        cells += [_mean_std(entry, m, 2) for m in SUMMARY_METRICS[:-1]]
        if gain:
            cells += [_mean_std(entry, f'gain_{m}', 2)
                      if f'gain_{m}_mean' in entry else '—'
                      for m in GAIN_METRICS]
        cells.append(_mean_std(entry, 'time_per_iter', 3))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def pooled(rows: Sequence[Dict], name: str = 'all') -> List[Dict]:
    """The runs of every variant as one variant, ``name``; each run's seed
    becomes ``<variant>/<seed>``, so gains stay paired by variant and
    seed."""
    return [
        dict(r, variant=name, seed=f'{variant_of(r)}/{r.get("seed", "")}')
        for r in rows
    ]


def write_results(out_dir: str,
                  rows: Sequence[Dict],
                  preset: str,
                  baseline: Optional[str] = 'ce',
                  pool_variants: bool = False) -> List[Dict]:
    """Write ``results.csv`` and ``results.md`` of a study's runs.

    Args:
        out_dir (str): The study's folder.
        rows (Sequence[dict]): Per-run rows, e.g.
            :func:`~mmseg_pat.analysis.runs.load_runs` of its
            ``runs.csv``.
        preset (str): The preset's name, for the table's caption.
        baseline (str, optional): See :func:`summarize`. Default: 'ce'.
        pool_variants (bool): Add the rows of all variants together
            (variant ``'all'``, :func:`pooled`): mean ± std over variants
            and seeds. Default: False.

    Returns:
        list[dict]: The summary rows (:func:`summarize`).
    """
    summary = summarize(rows, baseline=baseline)
    if pool_variants:
        summary += summarize(pooled(rows), baseline=baseline)
    _write_csv(osp.join(out_dir, 'results.csv'), summary)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(f'Preset `{preset}`, {len(rows)} runs; metrics in '
                '% (mean ± std over seeds), s / iter: median after '
                'warm-up.\n\n' + markdown_table(summary, baseline))
    return summary


def write_curves(out_dir: str,
                 points: Sequence[Dict],
                 baseline: str = 'ce',
                 metrics: Sequence[str] = GAIN_METRICS) -> None:
    """Write ``curves.csv`` (every evaluation of every run) and
    ``curves.md``: per metric and iteration, each method's mean ± std over
    the seeds and its gain over the baseline, paired by seed.

    Args:
        out_dir (str): The study's folder.
        points (Sequence[dict]): Learning-curve rows
            (:func:`~mmseg_pat.analysis.runs.collect_curves`).
        baseline (str): Method the gains are measured from. Default: 'ce'.
        metrics (Sequence[str]): One table per metric.
            Default: :data:`GAIN_METRICS`.
    """
    _write_csv(osp.join(out_dir, 'curves.csv'), points, first=CURVE_COLUMNS)
    lines = []
    for variant in dict.fromkeys(map(variant_of, points)):
        members = [p for p in points if variant_of(p) == variant]
        summary = summarize(by_iteration(members), metrics, baseline)
        methods = methods_of(members)
        others = [m for m in methods if m != baseline]
        for metric in metrics:
            name = metric.replace('_', ' ')
            lines += [
                f'{name}{f", {variant}" if variant else ""} (mean ± std '
                'over seeds; Δ: paired by seed)', '',
                '| iteration | ' + ' | '.join(methods + [
                    f'Δ {m} vs {baseline}' for m in others]) + ' |',
                '|---:|' + '---:|' * (len(methods) + len(others))
            ]
            entries = {(e['variant'], e['method']): e for e in summary}
            for step in sorted({e['variant'] for e in summary}, key=int):
                cells = [
                    _mean_std(entries[(step, m)], metric, 2)
                    if (step, m) in entries else 'n/a' for m in methods
                ]
                cells += [
                    _mean_std(entries[(step, m)], f'gain_{metric}', 2)
                    if f'gain_{metric}_mean' in entries.get((step, m), {})
                    else 'n/a' for m in others
                ]
                lines.append(f'| {step} | ' + ' | '.join(cells) + ' |')
            lines.append('')
    with open(osp.join(out_dir, 'curves.md'), 'w') as f:
        f.write('\n'.join(lines))


def memory_sizes(grids: Sequence[int] = MEMORY_GRIDS) -> str:
    """The memory's size per grid for the full data sets, in Markdown.

    One copy: ``rows x cols`` bytes per training image, as
    ``memory_dir/memory.u8`` on disk, in each checkpoint and on the
    device (:data:`FULL_DATASETS`).
    """
    header = ['cells a side'] + [
        f'{name} ({images} images)' for name, images, _ in FULL_DATASETS
    ]
    lines = [
        '| ' + ' | '.join(header) + ' |',
        '|---:|' + '---:|' * len(FULL_DATASETS)
    ]
    for n in grids:
        cells = [str(n)]
        for _, images, shape in FULL_DATASETS:
            rows, cols = shape(n)
            cells.append(f'{rows} x {cols}: '
                         f'{images * rows * cols / 2**20:.1f} MiB')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def write_command(path: str, command: Sequence[str], wall_s: float,
                  threads: int) -> None:
    """Write the command line, the wall time and the machine."""
    import torch
    niceness = os.nice(0)
    line = shlex.join([osp.relpath(sys.executable), *command])
    if niceness:
        line = f'nice -n {niceness} {line}'
    with open(path, 'w') as f:
        f.write(f'{line}\n\n'
                f'wall time: {wall_s:.0f} s ({wall_s / 60:.1f} min)\n'
                f'machine: {platform.machine()}, {os.cpu_count()} CPU '
                f'cores, {threads or "default"} thread(s) per run, torch '
                f'{torch.__version__}, CUDA '
                f'{"yes" if torch.cuda.is_available() else "no"}\n')


def run_study(preset: str,
              out: str,
              work_dir: Optional[str] = None,
              methods: Optional[Sequence[str]] = None,
              seeds: Optional[Sequence[int]] = None,
              imbalance_ratios: Optional[Sequence[float]] = None,
              held_out_breeds: Optional[Sequence[str]] = None,
              memory_grids: Optional[Sequence[int]] = None,
              data_root: Optional[str] = None,
              iters: Optional[int] = None,
              val_interval: Optional[int] = None,
              shrink: bool = True,
              cfg_options: Optional[Dict] = None,
              baseline: str = 'ce',
              threads: int = 1,
              jobs: int = 1,
              skip_existing: bool = False,
              show_log: bool = False,
              command: Optional[Sequence[str]] = None) -> List[Dict]:
    """Run a study: plan, train, read back, tabulate and plot.

    Args:
        preset (str): A key of :data:`PRESETS`.
        out (str): Folder of the tables, plots and ``COMMAND.txt``.
        work_dir (str, optional): Folder of the runs. Default: ``out/runs``.
        methods, seeds: Default: None (the preset's).
        imbalance_ratios (Sequence[float], optional): One study per
            imbalance ratio of the generated data.
        held_out_breeds (Sequence[str], optional): One leave-one-breed-out
            fold per breed (:data:`HELD_OUT_BREED`).
        memory_grids (Sequence[int], optional): One study per
            PrevPredictionHook grid, N x N cells (:data:`MEMORY_GRID`).
            Given together, these three make one study per combination;
            none given: the preset's variants.
        data_root, iters, val_interval, shrink, cfg_options: See
            :func:`build_run_config`.
        baseline (str): Method the gains are measured from. Default: 'ce'.
        threads (int): CPU threads per run; 0 leaves torch's default.
            Default: 1.
        jobs (int): Runs trained at once. Default: 1.
        skip_existing (bool): Read back the runs whose work dir holds an
            evaluation instead of training them again. Default: False.
        show_log (bool): Stream the training logs (the ``demo`` preset
            always does). Default: False.
        command (Sequence[str], optional): The command line recorded in
            ``COMMAND.txt``. Default: None (``sys.argv``).

    Returns:
        list[dict]: The summary rows (:func:`summarize`).

    Raises:
        FileNotFoundError: If the preset's real sample is missing (before
            anything is written; see :func:`preset_data_root`).
    """
    start = time.time()
    settings = PRESETS[preset]
    preset_data_root(settings, data_root)
    os.makedirs(out, exist_ok=True)
    axes = {
        key: values
        for key, values in (('imbalance_ratio', imbalance_ratios),
                            (HELD_OUT_BREED, held_out_breeds),
                            (MEMORY_GRID, memory_grids)) if values
    }
    variants = [dict(zip(axes, values)) for values in product(*axes.values())
                ] if axes else None
    runs = plan_runs(
        settings,
        work_dir or osp.join(out, 'runs'),
        methods,
        seeds,
        variants,
        data_root=data_root,
        shrink=shrink,
        cfg_options=cfg_options,
        iters=iters,
        val_interval=val_interval)
    show_log = show_log or settings.get('show_log', False)
    print(f'{len(runs)} runs of preset {preset!r}', flush=True)

    def train(run):
        return run_one(run, threads, show_log, skip_existing)

    with ThreadPoolExecutor(max(jobs, 1)) as pool:
        rows = list(pool.map(train, runs))

    write_runs_csv(osp.join(out, 'runs.csv'), rows)
    summary = write_results(out, rows, preset, baseline,
                            settings.get('pool_variants', False))
    curves = collect_curves(rows)
    if curves:
        write_curves(out, curves, baseline)
    grids = sorted({
        v[MEMORY_GRID]
        for v in variants or settings.get('variants') or ()
        if isinstance(v.get(MEMORY_GRID), int)
    })
    if grids:
        with open(osp.join(out, 'memory_size.md'), 'w') as f:
            f.write(memory_sizes(grids))
    plots = plot_study(rows, out, baseline=baseline, curves=curves)
    write_command(
        osp.join(out, 'COMMAND.txt'), sys.argv if command is None else
        command, time.time() - start, threads)
    print('\n' + markdown_table(summary, baseline))
    print(f'results: {osp.join(out, "results.md")}')
    if show_log:
        last = rows[-1]
        print(f'\nevaluation of {last["method"]} (seed {last["seed"]}):\n'
              f'{evaluation_report(last["work_dir"])}\n')
    for path in plots:
        print(f'plot: {path}')
    return summary
