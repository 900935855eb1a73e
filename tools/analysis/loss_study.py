"""Train configs that differ only in the loss, over seeds, and compare them.

The evidence study of PAT (arXiv 2404.05393; ``shared/docs/PAT_SPEC.md``):
does it help the rare classes, and at what cost? Every method of
:data:`METHODS` is put on every head of one base config, trained with
``tools/train.py`` (one subprocess per run: runs are isolated, and easy to
spread over GPUs or cores with ``--jobs``), evaluated by
``LongTailIoUMetric`` and read back from the work dir's ``scalars.json``.
Written into ``--out``:

* ``runs.csv``: one row per run (method, seed, variant, status, every
  metric including ``IoU.<class>``, seconds per iteration, final training
  loss, work dir, class counts, checkpoint);
* ``results.csv`` and ``results.md``: mean ± std over the seeds of each
  method, and its gain over the baseline paired by seed;
* the plots of ``plot_study.py`` and ``COMMAND.txt`` (command line, wall
  time, machine).

The presets of :data:`PRESETS` fit two CPU cores. The ``oxfordpet`` preset
trains on the real Oxford-IIIT Pet sample, ``oxford_pet/`` in the folder
named by ``MMSEG_PAT_SAMPLES`` (default: ``shared/data`` beside the
project), or on the data root given with ``--data-root``. ``--data-root``,
``--iters``, ``--no-shrink`` and ``--cfg-options`` scale them up, e.g. on a
GPU with the full Oxford-IIIT Pet::

    python tools/analysis/loss_study.py --preset oxfordpet \\
        --data-root data/oxford_pet --no-shrink --iters 40000 \\
        --threads 0 --out work_dirs/study_oxfordpet

Pretrained weights stay off (nothing downloads); ``--cfg-options
model.backbone.init_cfg.type=Pretrained
model.backbone.init_cfg.checkpoint=URL`` turns them back on.
"""
import argparse
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
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

PROJECT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# Run from a checkout without installing: make ``import mmseg_pat`` work,
# and the plotting module beside this file importable.
sys.path.insert(0, PROJECT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from plot_study import (evaluation_report, finished, mean_std,  # noqa: E402
                        paired_gains, plot_study, read_run, slug, variant_of)

from mmseg_pat.datasets import resolve_class_counts  # noqa: E402
from mmseg_pat.utils.launch import iter_heads  # noqa: E402

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

#: Ready studies. Keys: ``config`` (relative to the project), ``data_root``
#: (None: the config's), ``sample`` (instead of ``data_root``: a folder of
#: the real samples, see :func:`samples_dir`), ``methods``, ``seeds``,
#: ``iters`` (None: the config's), ``shrink`` (:func:`shrink_config`
#: arguments, skipped with --no-shrink), ``generation`` (overrides of a
#: generated dataset's parameters), ``variants`` (one study per set of
#: generation overrides, each in its own data root), ``cfg_options``,
#: ``show_log`` (stream the training logs).
PRESETS = {
    # The real Oxford-IIIT Pet sample, SegFormer MiT-B0 from random init.
    'oxfordpet':
    dict(
        config='configs/_base_/experiments/segformer_oxfordpet.py',
        sample='oxford_pet',
        methods=tuple(METHODS),
        seeds=(0, 1, 2),
        iters=200,
        shrink=dict(scale=(160, 160), crop=(128, 128), batch_size=4),
        # From random init and for a few hundred iterations, 10x the
        # recipe's learning rate (the head keeps its 10x on top).
        cfg_options={'optim_wrapper.optimizer.lr': 6e-4}),
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
_RUN_COLUMNS = ('method', 'seed', 'variant', 'status', 'aAcc', 'mIoU',
                'mAcc', 'head_mIoU', 'body_mIoU', 'tail_mIoU', 'head_mAcc',
                'body_mAcc', 'tail_mAcc', 'time_per_iter', 'final_loss',
                'iters')
_PATH_COLUMNS = ('work_dir', 'config', 'class_counts', 'checkpoint')


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


def set_iterations(cfg: Config, iters: int) -> None:
    """Train ``iters`` iterations, validate and save once at the end, and
    rescale the iteration-based learning-rate schedule to the new length.

    Raises:
        ValueError: If the config does not train by iterations.
    """
    if cfg.train_cfg.get('type') != 'IterBasedTrainLoop':
        raise ValueError('the study needs an IterBasedTrainLoop, got '
                         f"{cfg.train_cfg.get('type')}")
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
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
    cfg.train_cfg.update(max_iters=iters, val_interval=iters)


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


def variant_name(overrides: Dict) -> str:
    """``'imbalance_ratio=5'`` for ``dict(imbalance_ratio=5.0)``."""
    return ','.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}'
                    for k, v in overrides.items())


def build_run_config(preset: Dict, method: str, seed: int, variant: Dict,
                     work_dir: str, counts_dir: str,
                     args: argparse.Namespace) -> Config:
    """The full config of one run, class counts resolved.

    Order: the preset's base config, offline, data root and generation
    (each variant in its own sub-folder), shrinking, the preset's then the
    command line's ``--cfg-options``, iterations (one evaluation and one
    checkpoint, at the end), the method's loss (last, so that options
    cannot leave another loss on a head), the seed.
    """
    cfg = Config.fromfile(osp.join(PROJECT, preset['config']))
    make_offline(cfg)
    data_root = (preset_data_root(preset, args.data_root)
                 or cfg.train_dataloader.dataset.data_root)
    if variant:
        data_root = osp.join(data_root, slug(variant_name(variant)))
    set_data(cfg, osp.abspath(data_root),
             dict(preset.get('generation') or {}, **variant))
    if preset.get('shrink') and not args.no_shrink:
        shrink_config(cfg, **preset['shrink'])
    cfg.merge_from_dict(preset.get('cfg_options') or {})
    cfg.merge_from_dict(args.cfg_options or {})
    iters = args.iters or preset.get('iters')
    if iters:
        set_iterations(cfg, iters)
    max_iters = cfg.train_cfg.max_iters
    cfg.default_hooks.checkpoint.update(
        interval=max_iters, by_epoch=False, save_optimizer=False)
    # Often enough for a median time per iteration after the warm-up.
    cfg.default_hooks.logger.interval = max(
        1, min(max_iters // 20, cfg.default_hooks.logger.interval))
    set_method(cfg, METHODS[method])
    cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)
    cfg.work_dir = osp.abspath(work_dir)
    resolve_class_counts(cfg, counts_dir)
    return cfg


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


def run_one(run: Dict, threads: int, show_log: bool,
            skip_existing: bool) -> Dict:
    """Train (unless done and ``skip_existing``) and read back one run.

    Returns:
        dict: The run's row: ``method``, ``seed``, ``variant``, ``status``
        (``'ok'``, ``'diverged'`` when the last training loss is not
        finite, or ``'failed'`` when the training exits with an error or
        leaves no evaluation) and the metrics of
        :func:`plot_study.read_run`.
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


def _has_evaluation(work_dir: str) -> bool:
    try:
        read_run(work_dir)
    except (FileNotFoundError, ValueError):
        return False
    return True


def plan_runs(preset: Dict, args: argparse.Namespace) -> List[Dict]:
    """Write the config of every run; the list of runs to train."""
    variants = preset.get('variants') or [{}]
    if args.imbalance_ratios:
        variants = [dict(imbalance_ratio=r) for r in args.imbalance_ratios]
    methods = args.methods or preset['methods']
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f'unknown methods {unknown}; choose from '
                         f'{list(METHODS)}')
    seeds = args.seeds or preset['seeds']
    runs_root = args.work_dir or osp.join(args.out, 'runs')
    counts_dir = osp.join(runs_root, 'class_counts')
    runs = []
    for variant in variants:
        name = variant_name(variant)
        for seed in seeds:
            for method in methods:
                work_dir = osp.join(runs_root, slug(name), method,
                                    f'seed{seed}')
                label = '/'.join(p for p in (name, method, f'seed{seed}')
                                 if p)
                cfg = build_run_config(preset, method, seed, variant,
                                       work_dir, counts_dir, args)
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
            (:func:`plot_study.paired_gains`). Default: ``'ce'``.

    Returns:
        list[dict]: In order of first appearance, ``variant``, ``method``,
        ``runs``, ``failed``, ``diverged``, ``<metric>_mean`` and
        ``<metric>_std``, and ``gain_<metric>_mean`` / ``_std`` where the
        baseline ran.
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
                mean, std, _ = by_group[(variant, method)]
                entry[f'gain_{metric}_mean'] = mean
                entry[f'gain_{metric}_std'] = std
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
    """Write the per-run table: fixed columns, then ``IoU.<class>``, then
    the paths."""
    iou = []
    for row in rows:
        iou += [k for k in row if k.startswith('IoU.') and k not in iou]
    ordered = [{
        k: row[k]
        for k in (*_RUN_COLUMNS, *iou, *_PATH_COLUMNS) if k in row
    } for row in rows]
    _write_csv(path, ordered, first=(*_RUN_COLUMNS, *iou, *_PATH_COLUMNS))


def _mean_std(entry: Dict, key: str, digits: int) -> str:
    mean, std = entry.get(f'{key}_mean'), entry.get(f'{key}_std')
    if mean is None or math.isnan(mean):
        return 'n/a'
    if entry['runs'] - entry['failed'] > 1 or key.startswith('gain_'):
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


def write_command(path: str, argv: Sequence[str], wall_s: float,
                  threads: int) -> None:
    """Write the command line, the wall time and the machine."""
    import torch
    niceness = os.nice(0)
    command = shlex.join([osp.relpath(sys.executable), *argv])
    if niceness:
        command = f'nice -n {niceness} {command}'
    with open(path, 'w') as f:
        f.write(f'{command}\n\n'
                f'wall time: {wall_s:.0f} s ({wall_s / 60:.1f} min)\n'
                f'machine: {platform.machine()}, {os.cpu_count()} CPU '
                f'cores, {threads or "default"} thread(s) per run, torch '
                f'{torch.__version__}, CUDA '
                f'{"yes" if torch.cuda.is_available() else "no"}\n')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train configs that differ only in the loss over '
        'several seeds and compare them (tables and plots)')
    parser.add_argument('--preset', choices=list(PRESETS), required=True)
    parser.add_argument(
        '--methods',
        nargs='+',
        help=f'methods to compare (default: the preset\'s); from '
        f'{", ".join(METHODS)}')
    parser.add_argument('--seeds', nargs='+', type=int)
    parser.add_argument(
        '--iters', type=int, help='training iterations of every run')
    parser.add_argument(
        '--out', required=True, help='folder of the tables and plots')
    parser.add_argument(
        '--work-dir', help='folder of the runs (default: OUT/runs)')
    parser.add_argument(
        '--data-root',
        help='dataset root for every loader (default: the preset\'s; for '
        'oxfordpet, oxford_pet/ in $MMSEG_PAT_SAMPLES)')
    parser.add_argument(
        '--no-shrink',
        action='store_true',
        help='keep the config\'s image sizes, batch size and workers')
    parser.add_argument(
        '--imbalance-ratios',
        nargs='+',
        type=float,
        help='one study per imbalance ratio of the generated data')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of every run, key=value')
    parser.add_argument(
        '--baseline',
        default='ce',
        help='method the gains are measured from (default: ce)')
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='CPU threads per run; 0 leaves torch\'s default (default: 1)')
    parser.add_argument(
        '--jobs', type=int, default=1, help='runs trained at once')
    parser.add_argument(
        '--skip-existing',
        action='store_true',
        help='read back runs whose work dir holds an evaluation instead of '
        'training them again')
    parser.add_argument(
        '--show-log',
        action='store_true',
        help='stream the training logs (default for the demo)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    """Run the study; the summary rows."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    start = time.time()
    preset = PRESETS[args.preset]
    try:
        preset_data_root(preset, args.data_root)
    except FileNotFoundError as err:
        sys.exit(f'error: --preset {args.preset}: {err}')
    os.makedirs(args.out, exist_ok=True)
    runs = plan_runs(preset, args)
    show_log = args.show_log or preset.get('show_log', False)
    print(f'{len(runs)} runs of preset {args.preset!r}', flush=True)

    def train(run):
        return run_one(run, args.threads, show_log, args.skip_existing)

    with ThreadPoolExecutor(max(args.jobs, 1)) as pool:
        rows = list(pool.map(train, runs))

    write_runs_csv(osp.join(args.out, 'runs.csv'), rows)
    summary = summarize(rows, baseline=args.baseline)
    _write_csv(osp.join(args.out, 'results.csv'), summary)
    table = markdown_table(summary, args.baseline)
    with open(osp.join(args.out, 'results.md'), 'w') as f:
        f.write(f'Preset `{args.preset}`, {len(runs)} runs; metrics in '
                '% (mean ± std over seeds), s / iter: median after '
                'warm-up.\n\n' + table)
    plots = plot_study(rows, args.out, baseline=args.baseline)
    write_command(
        osp.join(args.out, 'COMMAND.txt'), [osp.relpath(__file__), *argv],
        time.time() - start, args.threads)
    print('\n' + table)
    print(f'results: {osp.join(args.out, "results.md")}')
    if show_log:
        last = rows[-1]
        print(f'\nevaluation of {last["method"]} (seed {last["seed"]}):\n'
              f'{evaluation_report(last["work_dir"])}\n')
    for path in plots:
        print(f'plot: {path}')
    return summary


if __name__ == '__main__':
    main()
