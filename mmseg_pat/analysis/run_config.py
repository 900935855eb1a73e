"""The config of each run of a loss study, written before anything trains.

:func:`plan_runs` writes one ``config.py`` per (variant, method, seed)
into the run's work dir, built by :func:`build_run_config` from the
preset's base config: each run's config says everything it trains with
(loss, hooks, data, iterations, seed, class counts), so a run can be
trained again, or read back, from its work dir alone.
"""
import copy
import math
import os
import os.path as osp
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS

from mmseg_pat.datasets import (cached_class_counts,
                                cached_per_image_class_counts)
from mmseg_pat.stack import load_config
from mmseg_pat.utils.class_counts import FROM_TRAIN_SET
from mmseg_pat.utils.model_heads import head_configs

from .breed_folds import set_breed_fold
from .presets import (HELD_OUT_BREED, MEMORY_GRID, METHODS, config_path,
                      method_losses, method_sampler, needs_memory,
                      preset_data_root)
from .runs import slug


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


def set_method(cfg: Config, setting: Union[Dict, List[Dict]]) -> None:
    """Put a method's loss(es) on every head, its sampler (if it has one)
    on the training loader, and PrevPredictionHook on or off
    (PlainCheckpointHook in its place when off).

    ``setting`` is a value of :data:`~.presets.METHODS`. An auxiliary head
    keeps the weight of its loss, which multiplies the method's. A hook set
    up by the config is kept with its settings (e.g. its grid).
    """
    losses = method_losses(setting)
    for _, head in head_configs(cfg.model):
        old = head.get('loss_decode')
        weight = old.get('loss_weight', 1.0) if isinstance(old, dict) else 1.0
        new = [
            dict(copy.deepcopy(loss),
                 loss_weight=weight * loss.get('loss_weight', 1.0))
            for loss in losses
        ]
        head.loss_decode = new[0] if len(new) == 1 else new
    sampler = method_sampler(setting)
    if sampler:
        cfg.train_dataloader.sampler = copy.deepcopy(sampler)
    hooks = list(cfg.get('custom_hooks') or [])
    memory = [h for h in hooks if h['type'] == 'PrevPredictionHook']
    hooks = [h for h in hooks if h['type'] != 'PrevPredictionHook']
    if needs_memory(setting):
        hooks += memory[:1] or [dict(type='PrevPredictionHook')]
    elif not any(h['type'] == 'PlainCheckpointHook' for h in hooks):
        # what PrevPredictionHook did for the run's checkpoints
        hooks.append(dict(type='PlainCheckpointHook'))
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
    """Give the runs of a study their training set's counts as a file (and
    a RareClassSampler its per-image table's folder).

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
    sampler = cfg.train_dataloader.get('sampler') or {}
    rare_class = sampler.get('type') == 'RareClassSampler'
    if not holders and not rare_class:
        return None
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmseg')):
        dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    if rare_class:
        # its per-image table, counted once for all the study's runs
        cached_per_image_class_counts(dataset, cache_dir)
        sampler.setdefault('cache_dir', osp.abspath(cache_dir))
    if not holders:
        return None
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
                     samples: Optional[str] = None,
                     shrink: bool = True,
                     cfg_options: Optional[Dict] = None,
                     iters: Optional[int] = None,
                     val_interval: Optional[int] = None) -> Config:
    """The full config of one run, class counts filled in.

    Order: the preset's base config (:func:`~.presets.config_path`),
    offline, data root and generation (each generated variant in its own
    sub-folder), the breed fold (split lists in ``<work_dir>/split/``),
    shrinking, the preset's then the given ``cfg_options``, iterations
    (evaluations every ``val_interval`` and at the end, one checkpoint at
    the end), the method's loss (last, so that options cannot leave
    another loss on a head) and the memory grid, the seed, the class
    counts (:func:`set_train_set_counts` in ``counts_dir``).

    Args:
        preset (dict): One of :data:`~.presets.PRESETS`.
        method (str): One of :data:`~.presets.METHODS`.
        seed (int): The run's random seed.
        variant (dict): This run's variant: generation overrides of its
            data, :data:`~.presets.HELD_OUT_BREED`,
            :data:`~.presets.MEMORY_GRID`.
        work_dir (str): The run's work dir.
        counts_dir (str): Where the training set's counts are cached.
        data_root (str, optional): Data root of every loader.
            Default: None (:func:`~.presets.preset_data_root`).
        samples (str, optional): Folder of the real dataset samples, for
            a preset that trains on one. Default: None
            (:func:`~.presets.samples_dir`).
        shrink (bool): Apply the preset's ``shrink``. Default: True.
        cfg_options (dict, optional): Overrides, ``key: value``.
            Default: None.
        iters (int, optional): Training iterations. Default: None (the
            preset's, else the config's).
        val_interval (int, optional): Validate every this many
            iterations. Default: None (the preset's, else once at the end).
    """
    cfg = load_config(config_path(preset['config']))
    make_offline(cfg)
    data_root = (preset_data_root(preset, data_root, samples)
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
        preset (dict): One of :data:`~.presets.PRESETS`.
        runs_root (str): Folder of the runs' work dirs,
            ``<variant>/<method>/seed<seed>``, and of the class counts.
        methods, seeds, variants: Default: None (the preset's). A method
            that keeps no memory runs once for all memory grids
            (:func:`variant_of_method`).
        config_options: ``data_root``, ``samples``, ``shrink``,
            ``cfg_options``, ``iters`` and ``val_interval`` of
            :func:`build_run_config`.

    Returns:
        list[dict]: ``method``, ``seed``, ``variant`` (its name), ``label``,
        ``work_dir`` and ``config_path`` of each run.

    Raises:
        ValueError: If a method is not in :data:`~.presets.METHODS`.
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
                config_file = osp.join(work_dir, 'config.py')
                cfg.dump(config_file)
                runs.append(
                    dict(
                        method=method,
                        seed=seed,
                        variant=name,
                        label=label,
                        work_dir=cfg.work_dir,
                        config_path=config_file))
    return runs
