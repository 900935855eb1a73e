"""Cost of PrevPredictionHook, side by side in one run.

What is timed is the hook users run: ``PrevPredictionHook`` itself, in
SegFormer-B0 + PATLoss training through MMEngine's runner, pairing what it
compares in one process (separate runs differ by +-10% on the development
machine, more than the hook costs). The hook works on even iterations and
stands aside on odd ones (PATLoss then falls back to its current
confidences, exactly as without the hook).

1. **The hook's methods per crop** (``--crops``): the time its
   ``before_train_iter`` and ``after_train_iter`` take per iteration (the
   cell index from the pixel origins, the read, the per-cell mean, the
   write, its statistics), per crop size, in ms and ms per megapixel.
2. **Training iterations** (the first crop, ``--repeats``): each iteration
   timed from the first hook before the forward to the last hook after
   the step, with and without the hook; the data pipeline with and
   without the origin transforms timed alternately on the same images.
   Reports the iteration ratio and the hook's share.

On a GPU (``--device cuda``) every timer waits for the device.

Usage: python benchmarks/hook_overhead.py [--device cpu] [--crops 256x256
512x512 512x1024] [--batch 2] [--iters 24] [--sweep-iters 8] [--repeats 3]
[--grid 128x128]
"""
import argparse
import copy
import functools
import os
import os.path as osp
import statistics
import tempfile
import time
from typing import Tuple

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmseg.registry import DATASETS

import mmseg_pat  # noqa: F401
from mmseg_pat.engine import PrevPredictionHook
from mmseg_pat.models.losses import PATLoss
from mmseg_pat.stack import load_config

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _size(text: str) -> Tuple[int, int]:
    h, w = text.lower().split('x')
    return int(h), int(w)


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


# -- part 1: the per-pixel work, before and after ---------------------------
# -- training iterations with and without the hook --------------------------
def make_config(work_dir: str, data_root: str, iters: int,
                crop: Tuple[int, int], batch: int,
                grid: Tuple[int, int]) -> Config:
    cfg = load_config(
        osp.join(PROJECT, 'configs/demo/segformer_long_tail_shapes_pat.py'))
    generation = dict(
        num_train=8, num_val=1, image_size=crop, imbalance_ratio=50.0,
        num_shape_classes=5, seed=0)
    cfg.model.data_preprocessor.size = crop
    cfg.data_preprocessor = cfg.model.data_preprocessor
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='LoadPixelOrigins'),
        dict(type='RandomResize', scale=(crop[1], crop[0]),
             ratio_range=(1.0, 1.5), keep_ratio=True),
        dict(type='RandomCrop', crop_size=crop),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputsWithOrigins'),
    ]
    cfg.custom_hooks = [
        dict(type='ClassCountsHook'),
        dict(type='PrevPredictionHook', grid=grid)
    ]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.update(data_root=data_root, generation=generation)
    cfg.train_dataloader.batch_size = batch
    cfg.train_dataloader.dataset.pipeline = pipeline
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1000
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=iters + 1, by_epoch=False)
    cfg.log_level = 'WARNING'
    cfg.work_dir = work_dir
    return cfg


def switch_hook_methods(state: dict):
    """Make the hook's per-iteration methods run only while ``state['on']``
    and add up the time they take (waiting for the device on a GPU)."""
    for name in ('before_train_iter', 'after_train_iter'):
        method = getattr(PrevPredictionHook, name)

        @functools.wraps(method)
        def wrapper(self, runner, *args, _method=method, **kwargs):
            if not state['on']:
                # stand aside as if absent, without the loss's warning that
                # the hook is missing
                for loss in self._losses:
                    loss._warned_no_memory = True
                return
            _sync(state['device'])
            start = time.perf_counter()
            _method(self, runner, *args, **kwargs)
            _sync(state['device'])
            state['hook_time'] += time.perf_counter() - start

        setattr(PrevPredictionHook, name, wrapper)


class _StepStart(Hook):
    """First hook of an iteration: picks on/off and starts the clock."""
    priority = 'HIGHEST'

    def __init__(self, state):
        self.state = state

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.state['on'] = runner.iter % 2 == 0
        _sync(self.state['device'])
        self.state['start'] = time.perf_counter()


class _StepStop(Hook):
    """Last hook of an iteration: stops the clock."""
    priority = 'LOWEST'

    def __init__(self, state):
        self.state = state

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        _sync(self.state['device'])
        key = 'with_hook' if self.state['on'] else 'without'
        self.state[key].append(time.perf_counter() - self.state['start'])


def paired_steps(cfg: Config, state: dict, warmup: int = 2) -> dict:
    """Median step time with and without the hook in one runner."""
    state.update(with_hook=[], without=[], hook_time=0.0, on=False)
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_StepStart(state))
    runner.register_hook(_StepStop(state))
    runner.train()
    assert any(isinstance(m, PATLoss) for m in runner.model.modules())
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
    parser.add_argument('--device', default='cpu',
                        help="'cpu' or 'cuda' (default: cpu)")
    parser.add_argument('--crops', nargs='+', default=[
        '256x256', '512x512', '512x1024'], help='crop sizes HxW to sweep')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--grid', default='128x128',
                        help='memory cells per image, ROWSxCOLS')
    parser.add_argument(
        '--iters', type=int, default=24,
        help='training iterations per repeat, half of them with the hook '
        '(0: skip part 2)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--sweep-iters', type=int, default=8,
                        help='part 1: training iterations per crop')
    args = parser.parse_args()
    if args.device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''  # the runner picks CUDA
    elif not torch.cuda.is_available():
        parser.error('--device cuda but torch sees no CUDA device')
    init_default_scope('mmseg')
    crops = [_size(c) for c in args.crops]
    grid = _size(args.grid)
    where = (torch.cuda.get_device_name(0)
             if args.device.startswith('cuda') else
             f'CPU, {torch.get_num_threads()} threads')
    print(f'PrevPredictionHook cost on {where}, torch {torch.__version__}; '
          f'batch {args.batch}, grid {grid[0]}x{grid[1]} '
          f'({grid[0] * grid[1] / 1024:.0f} KiB per image).')

    state = dict(hook_time=0.0, device=args.device)
    switch_hook_methods(state)
    with tempfile.TemporaryDirectory() as tmp:
        print(f'\n### The hook\'s methods per iteration (before_train_iter + '
              f'after_train_iter), {args.sweep_iters} iterations per crop, '
              'half with the hook\n')
        print('| crop | megapixels per batch | hook ms | hook ms / MP |')
        print('|---|---:|---:|---:|')
        for crop in crops:
            cfg = make_config(osp.join(tmp, f'sweep{crop[0]}x{crop[1]}'),
                              osp.join(tmp, f'images{crop[0]}x{crop[1]}'),
                              args.sweep_iters, crop, args.batch, grid)
            paired_steps(cfg, state)
            hook = 1e3 * state['hook_time'] / (args.sweep_iters // 2)
            megapixels = args.batch * crop[0] * crop[1] / 1e6
            print(f'| {crop[0]}x{crop[1]} | {megapixels:.2f} | {hook:.2f} | '
                  f'{hook / megapixels:.2f} |')
        if args.iters <= 0:
            return
        rows = []
        crop = crops[0]
        data_root = osp.join(tmp, 'train_images')
        for r in range(args.repeats):
            cfg = make_config(osp.join(tmp, f'run{r}'), data_root,
                              args.iters, crop, args.batch, grid)
            step = paired_steps(cfg, state)
            hook = state['hook_time'] / (args.iters // 2)
            data = paired_data(cfg)
            rows.append((step, data, hook))
    print(f'\n### SegFormer-B0 + PATLoss training iterations, {crop[0]}x'
          f'{crop[1]}, batch {args.batch}: {args.repeats} repeats of '
          f'{args.iters} iterations alternating with / without the hook '
          '(medians; first 2 iterations dropped); data = pipeline time for '
          'the batch, alternating, same images\n')
    print('| repeat | step without (s) | step with (s) | paired step '
          'difference (s) | data without (s) | data with (s) | hook methods '
          '(s) | hook share of the iteration | iteration ratio | paired '
          'ratio |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    ratios, paired = [], []
    for r, (step, data, hook) in enumerate(rows):
        without = step['without'] + data['without']
        ratios.append((step['with_hook'] + data['with_hook']) / without)
        paired.append((without + step['paired_extra'] + data['with_hook'] -
                       data['without']) / without)
        print(f"| {r + 1} | {step['without']:.4f} | {step['with_hook']:.4f} "
              f"| {step['paired_extra']:+.4f} | {data['without']:.4f} "
              f"| {data['with_hook']:.4f} | {hook:.4f} | "
              f"{hook / (step['with_hook'] + data['with_hook']):.1%} | "
              f'{ratios[-1]:.3f} | {paired[-1]:.3f} |')
    for name, values in (('ratio of medians', ratios),
                         ('paired ratio', paired)):
        print(f'Iteration time with the hook / without, {name}: median '
              f'{statistics.median(values):.3f} (range {min(values):.3f}-'
              f'{max(values):.3f}).')


if __name__ == '__main__':
    main()
