"""Overhead of PrevPredictionHook on a training iteration, side by side.

SegFormer-B0 (MiT-b0, random init, BN) with PATLoss at 512 x 512, batch 2,
on generated images, trained through MMEngine's runner with and without the
hook (and its pipeline transforms), in alternating rounds. Reports the
median iteration time of each, their ratio, the time spent inside the hook's
own methods, and the memory size per image.

Usage: python benchmarks/hook_overhead.py [--iters 8] [--rounds 2]
"""
import argparse
import functools
import os.path as osp
import statistics
import tempfile
import time

from mmengine.config import Config
from mmengine.runner import Runner

import mmseg_pat  # noqa: F401
from mmseg_pat.datasets import resolve_class_counts
from mmseg_pat.engine import PrevPredictionHook

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SIZE = (512, 512)
GRID = (128, 128)


def make_config(work_dir: str, data_root: str, iters: int,
                with_hook: bool) -> Config:
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
        dict(type='RandomResize', scale=SIZE, ratio_range=(1.0, 1.5),
             keep_ratio=True),
        dict(type='RandomCrop', crop_size=SIZE),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs'),
    ]
    cfg.custom_hooks = []
    if with_hook:
        pipeline.insert(2, dict(type='LoadPixelOrigins'))
        pipeline[-1] = dict(type='PackSegInputsWithOrigins')
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


def timed_hook_methods(totals: dict):
    """Accumulate the time spent in the hook's per-iteration methods."""
    for name in ('before_train_iter', 'after_train_iter'):
        method = getattr(PrevPredictionHook, name)

        @functools.wraps(method)
        def wrapper(self, *args, _method=method, **kwargs):
            start = time.perf_counter()
            _method(self, *args, **kwargs)
            totals['hook'] += time.perf_counter() - start

        setattr(PrevPredictionHook, name, wrapper)


def run(cfg: Config, warmup: int = 2) -> tuple:
    """Iteration times and data-loading times, warm-up dropped."""
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    return tuple(
        list(hub.get_scalar(key).data[0][warmup:])
        for key in ('train/time', 'train/data_time'))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iters', type=int, default=8)
    parser.add_argument('--rounds', type=int, default=2)
    args = parser.parse_args()
    totals = dict(hook=0.0)
    timed_hook_methods(totals)
    times = {k: ([], []) for k in ('without', 'with_hook')}
    with tempfile.TemporaryDirectory() as tmp:
        data_root = osp.join(tmp, 'shapes512')
        for r in range(args.rounds):
            for key in times:
                cfg = make_config(
                    osp.join(tmp, f'{key}{r}'), data_root, args.iters,
                    key == 'with_hook')
                iteration, data = run(cfg)
                times[key][0].extend(iteration)
                times[key][1].extend(data)
    iteration = {k: statistics.median(v[0]) for k, v in times.items()}
    step = {
        k: statistics.median(t - d for t, d in zip(*v))
        for k, v in times.items()
    }
    hook_per_iter = totals['hook'] / (args.rounds * args.iters)
    print(f'SegFormer-B0 + PATLoss, {SIZE[0]}x{SIZE[1]}, batch 2, CPU, '
          f'data loaded in the training process; {args.rounds} rounds x '
          f'{args.iters} iterations of each (first 2 of each run dropped). '
          f'Memory: {GRID[0] * GRID[1] / 1024:.0f} KiB per image '
          f'({GRID[0]}x{GRID[1]} cells).')
    print('| measure | without hook (s) | with hook (s) | ratio |')
    print('|---|---:|---:|---:|')
    for name, value in (('iteration', iteration),
                        ('iteration less data loading', step)):
        print(f"| {name} | {value['without']:.3f} | "
              f"{value['with_hook']:.3f} | "
              f"{value['with_hook'] / value['without']:.3f} |")
    print(f'| hook methods alone | | {hook_per_iter:.4f} | '
          f"{hook_per_iter / iteration['with_hook']:.1%} of an iteration |")


if __name__ == '__main__':
    main()
