"""Overhead of PrevPredictionHook on a training iteration, side by side.

SegFormer-B0 (MiT-b0, random init, BN) with PATLoss at 512 x 512, batch 2,
on generated images, trained through MMEngine's runner. Separate runs with
and without the hook differ by +-10% on this machine from one run to the next
(the VM's speed drifts), far more than the hook costs, so the comparison is
paired instead:

* step: one runner; the hook works on even iterations and stands aside on
  odd ones (PATLoss then falls back to its current confidences, exactly as
  without the hook). Each iteration is timed from the first hook before the
  forward to the last hook after the step, so the hook's reads and writes
  are inside the iteration they belong to.
* data: the train pipeline with and without ``LoadPixelOrigins`` /
  ``PackSegInputsWithOrigins``, applied alternately to the same images.

Iteration = data + step; the ratio is (data + step with the hook) over
(data + step without it), from medians. Also reports the time inside the
hook's own methods and the memory size per image.

Usage: python benchmarks/hook_overhead.py [--iters 24] [--repeats 3]
"""
import argparse
import copy
import functools
import os.path as osp
import statistics
import tempfile
import time

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmseg.registry import DATASETS

import mmseg_pat  # noqa: F401
from mmseg_pat.datasets import resolve_class_counts
from mmseg_pat.engine import PrevPredictionHook

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SIZE = (512, 512)
GRID = (128, 128)


def make_config(work_dir: str, data_root: str, iters: int) -> Config:
    cfg = Config.fromfile(
        osp.join(PROJECT, 'configs/demo/segformer_long_tail_shapes_pat.py'))
    generation = dict(
        num_train=8, num_val=1, image_size=SIZE, imbalance_ratio=50.0,
        num_shape_classes=5, seed=0)
    cfg.model.data_preprocessor.size = SIZE
    cfg.data_preprocessor = cfg.model.data_preprocessor
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='LoadPixelOrigins'),
        dict(type='RandomResize', scale=SIZE, ratio_range=(1.0, 1.5),
             keep_ratio=True),
        dict(type='RandomCrop', crop_size=SIZE),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputsWithOrigins'),
    ]
    cfg.custom_hooks = [dict(type='PrevPredictionHook', grid=GRID)]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.update(data_root=data_root, generation=generation)
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.dataset.pipeline = pipeline
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1000
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=iters + 1, by_epoch=False)
    cfg.log_level = 'WARNING'
    cfg.work_dir = work_dir
    resolve_class_counts(cfg, work_dir)
    return cfg


def switch_hook_methods(state: dict):
    """Make the hook's per-iteration methods run only while ``state['on']``
    and add up the time they take."""
    for name in ('before_train_iter', 'after_train_iter'):
        method = getattr(PrevPredictionHook, name)

        @functools.wraps(method)
        def wrapper(self, *args, _method=method, **kwargs):
            if not state['on']:
                return
            start = time.perf_counter()
            _method(self, *args, **kwargs)
            state['hook_time'] += time.perf_counter() - start

        setattr(PrevPredictionHook, name, wrapper)


class _StepStart(Hook):
    """First hook of an iteration: picks on/off and starts the clock."""
    priority = 'HIGHEST'

    def __init__(self, state):
        self.state = state

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.state['on'] = runner.iter % 2 == 0
        self.state['start'] = time.perf_counter()


class _StepStop(Hook):
    """Last hook of an iteration: stops the clock."""
    priority = 'LOWEST'

    def __init__(self, state):
        self.state = state

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        key = 'with_hook' if self.state['on'] else 'without'
        self.state[key].append(time.perf_counter() - self.state['start'])


def paired_steps(cfg: Config, state: dict, warmup: int = 2) -> dict:
    """Median step time with and without the hook in one runner."""
    state.update(with_hook=[], without=[], hook_time=0.0, on=False)
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_StepStart(state))
    runner.register_hook(_StepStop(state))
    runner.train()
    medians = {
        key: statistics.median(state[key][warmup // 2:])
        for key in ('with_hook', 'without')
    }
    # each iteration with the hook against the one right after it
    medians['paired_extra'] = statistics.median(
        a - b for a, b in zip(state['with_hook'][warmup // 2:],
                              state['without'][warmup // 2:]))
    return medians


def paired_data(cfg: Config, passes: int = 2) -> dict:
    """Median time to load one training sample through the pipeline with
    the origin transforms and without them, alternating."""
    with_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    without_cfg = copy.deepcopy(with_cfg)
    without_cfg.pipeline = [
        dict(t) for t in with_cfg.pipeline if t['type'] != 'LoadPixelOrigins'
    ]
    without_cfg.pipeline[-1] = dict(type='PackSegInputs')
    datasets = dict(
        with_hook=DATASETS.build(with_cfg),
        without=DATASETS.build(without_cfg))
    times = dict(with_hook=[], without=[])
    for _ in range(passes):
        for i in range(len(datasets['without'])):
            for key, dataset in datasets.items():
                start = time.perf_counter()
                dataset[i]
                times[key].append(time.perf_counter() - start)
    batch = cfg.train_dataloader.batch_size
    return {k: batch * statistics.median(v) for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--iters', type=int, default=24,
        help='iterations per repeat, half of them with the hook')
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    state = dict(hook_time=0.0)
    switch_hook_methods(state)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_root = osp.join(tmp, 'shapes512')
        for r in range(args.repeats):
            cfg = make_config(osp.join(tmp, f'run{r}'), data_root, args.iters)
            step = paired_steps(cfg, state)
            hook = state['hook_time'] / (args.iters // 2)
            data = paired_data(cfg)
            rows.append((step, data, hook))
    print(f'SegFormer-B0 + PATLoss, {SIZE[0]}x{SIZE[1]}, batch 2, CPU; '
          f'{args.repeats} repeats of {args.iters} iterations alternating '
          'with / without the hook (medians; first 2 iterations dropped); '
          'data = pipeline time for the batch, alternating, same images. '
          f'Memory: {GRID[0] * GRID[1] / 1024:.0f} KiB per image '
          f'({GRID[0]}x{GRID[1]} cells).')
    print('| repeat | step without (s) | step with (s) | paired step '
          'difference (s) | data without (s) | data with (s) | hook methods '
          '(s) | iteration ratio | paired ratio |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    ratios, paired = [], []
    for r, (step, data, hook) in enumerate(rows):
        without = step['without'] + data['without']
        ratios.append((step['with_hook'] + data['with_hook']) / without)
        paired.append((without + step['paired_extra'] + data['with_hook'] -
                       data['without']) / without)
        print(f"| {r + 1} | {step['without']:.3f} | {step['with_hook']:.3f} "
              f"| {step['paired_extra']:+.3f} | {data['without']:.4f} "
              f"| {data['with_hook']:.4f} | {hook:.4f} | {ratios[-1]:.3f} "
              f'| {paired[-1]:.3f} |')
    for name, values in (('ratio of medians', ratios),
                         ('paired ratio', paired)):
        print(f'Iteration time with the hook / without, {name}: median '
              f'{statistics.median(values):.3f} (range {min(values):.3f}-'
              f'{max(values):.3f}); target <= 1.05.')


if __name__ == '__main__':
    main()
