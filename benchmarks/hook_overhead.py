"""Cost of PrevPredictionHook, side by side in one run.

Two parts, each pairing what it compares on the same inputs in one process
(separate runs differ by +-10% on the development machine, more than the
hook costs):

1. **Per-pixel work, before and after** (``--crops``): one iteration's
   memory work for a batch of augmented crops (cell index from the pixel
   origins, read into per-pixel maps, per-cell mean of the current
   confidences, write), alternately with the NumPy path this project used
   before (host arrays; the confidence map copied off the device and the
   read maps copied back every iteration, frozen below as
   :class:`NumpyPathBefore`) and with :class:`PredictionMemory` (torch on
   the device of the logits). Reports ms per iteration and per megapixel.
2. **Training iterations** (the first crop): SegFormer-B0 with PATLoss
   through MMEngine's runner; the hook works on even iterations and stands
   aside on odd ones (PATLoss then falls back to its current confidences,
   exactly as without the hook). Each iteration is timed from the first
   hook before the forward to the last hook after the step; the data
   pipeline with and without the origin transforms is timed alternately on
   the same images. Reports the iteration ratio and the hook's own time.

On a GPU (``--device cuda``) every timer waits for the device.

Usage: python benchmarks/hook_overhead.py [--device cpu] [--crops 256x256
512x512 512x1024] [--batch 2] [--iters 24] [--repeats 3] [--grid 128x128]
"""
import argparse
import copy
import functools
import os
import os.path as osp
import statistics
import tempfile
import time
from typing import List, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmseg.registry import DATASETS

import mmseg_pat  # noqa: F401
from mmseg_pat.engine import PredictionMemory, PrevPredictionHook
from mmseg_pat.models.losses import ConfidenceExchange, PATLoss
from mmseg_pat.stack import load_config

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _size(text: str) -> Tuple[int, int]:
    h, w = text.lower().split('x')
    return int(h), int(w)


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


# -- part 1: the per-pixel work, before and after ---------------------------
class NumpyPathBefore:
    """The memory's per-pixel path before it moved to the device (commit
    82f82a1, frozen here as the baseline): NumPy on the host."""

    def __init__(self, num_images: int, grid: Sequence[int]):
        self.grid = tuple(grid)
        self.array = np.full((num_images, *grid), 255, np.uint8)

    def cell_index(self, origin, origin_shape):
        rows, cols = self.grid
        height, width = origin_shape
        origin = np.asarray(origin, dtype=np.int64)
        cell_row = np.minimum(origin[0] * rows // height, rows - 1)
        cell_col = np.minimum(origin[1] * cols // width, cols - 1)
        return cell_row * cols + cell_col

    def read(self, sample_idx, origin, origin_shape):
        stored = self.array[sample_idx].reshape(-1)[self.cell_index(
            origin, origin_shape)]
        confidence = stored.astype(np.float32) / 254
        confidence[stored == 255] = -1.0
        return torch.from_numpy(confidence)

    def write(self, sample_idx, origin, origin_shape, confidence):
        cells = self.cell_index(origin, origin_shape).reshape(-1)
        confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
        keep = confidence >= 0
        cells, confidence = cells[keep], confidence[keep]
        num_cells = self.grid[0] * self.grid[1]
        sums = np.bincount(cells, weights=confidence, minlength=num_cells)
        counts = np.bincount(cells, minlength=num_cells)
        written = np.flatnonzero(counts)
        values = np.round(sums[written] / counts[written] * 254)
        self.array[sample_idx].reshape(-1)[written] = np.clip(
            values, 0, 254).astype(np.uint8)

    def iteration(self, samples, current):
        maps = [self.read(i, o, s) for i, o, s in samples]
        n, height, width = current.shape
        prev = torch.full((n, height, width), -1.0)
        for k, m in enumerate(maps):
            prev[k, :m.shape[0], :m.shape[1]] = m
        prev = prev.to(current.device)  # handed to the loss
        host = current.cpu()  # and the confidences back for the write
        for k, (i, o, s) in enumerate(samples):
            h, w = o.shape[1:]
            self.write(i, o, s, host[k, :h, :w])
        return prev


def torch_iteration(memory: PredictionMemory, samples, current):
    """What PrevPredictionHook does per iteration, minus MMEngine."""
    device = memory.device
    with memory.working():
        cells = []
        for _, origin, shape in samples:
            cells.append(
                memory.cells(origin.to(device, non_blocking=True), shape))
        idx = torch.tensor([i for i, _, _ in samples]).to(device,
                                                          non_blocking=True)
        exchange = ConfidenceExchange(memory.read(idx, cells), writer=None)
    prev = exchange.previous_batch(current.shape)  # in the loss
    with memory.working():
        memory.write(idx, memory.cell_means(idx, cells, current))
    return prev


def augmented_batches(root: str, crop: Tuple[int, int], batch: int,
                      count: int):
    """``count`` batches of (sample_idx, origin, origin_shape) from the real
    train pipeline on generated images twice the crop's size."""
    h, w = crop
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='LoadPixelOrigins'),
        dict(type='RandomResize', scale=(2 * w, 2 * h),
             ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type='RandomCrop', crop_size=crop),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputsWithOrigins'),
    ]
    num_images = 4
    dataset = DATASETS.build(
        dict(type='LongTailShapesDataset', data_root=root,
             generation=dict(num_train=num_images, num_val=1,
                             image_size=(2 * h, 2 * w), imbalance_ratio=10.0,
                             num_shape_classes=5, seed=0),
             data_prefix=dict(img_path='img_dir/train',
                              seg_map_path='ann_dir/train'),
             pipeline=pipeline))
    batches = []
    for b in range(count):
        samples = []
        for k in range(batch):
            s = dataset[(b * batch + k) % num_images]['data_samples']
            samples.append((s.sample_idx, s.pixel_origin.data,
                            tuple(s.origin_shape)))
        batches.append(samples)
    return batches, num_images


def per_pixel_sweep(device: str, crops: List[Tuple[int, int]], batch: int,
                    grid: Tuple[int, int], rounds: int, tmp: str):
    rows = []
    for crop in crops:
        batches, num_images = augmented_batches(
            osp.join(tmp, f'images_{crop[0]}x{crop[1]}'), crop, batch, 4)
        generator = torch.Generator().manual_seed(0)
        current = torch.rand((batch, *crop), generator=generator)
        current[:, :8] = -1.0  # some ignored pixels
        current = current.to(device)
        before = NumpyPathBefore(num_images, grid)
        after = PredictionMemory(
            PredictionMemory.make_meta(num_images, grid, 19, 'bench'),
            device)
        times = dict(before=[], after=[])
        for r in range(rounds + 2):  # the first two warm up
            for name, step in (
                    ('before', lambda s: before.iteration(s, current)),
                    ('after', lambda s: torch_iteration(after, s, current))):
                samples = batches[r % len(batches)]
                _sync(device)
                start = time.perf_counter()
                step(samples)
                _sync(device)
                if r >= 2:
                    times[name].append(time.perf_counter() - start)
        megapixels = batch * crop[0] * crop[1] / 1e6
        t_before = statistics.median(times['before'])
        t_after = statistics.median(times['after'])
        rows.append((crop, megapixels, t_before, t_after))
    return rows


# -- part 2: training iterations with and without the hook ------------------
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
    parser.add_argument('--rounds', type=int, default=10,
                        help='per-pixel part: rounds per crop')
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

    with tempfile.TemporaryDirectory() as tmp:
        sweep = per_pixel_sweep(args.device, crops, args.batch, grid,
                                args.rounds, tmp)
        print(f'\n### Per-pixel work per iteration, before (NumPy on the '
              f'host) and after (torch on {args.device}); median of '
              f'{args.rounds} alternating rounds\n')
        print('| crop | megapixels per batch | before ms | after ms | '
              'before ms / MP | after ms / MP | after / before |')
        print('|---|---:|---:|---:|---:|---:|---:|')
        for crop, mp, t_before, t_after in sweep:
            print(f'| {crop[0]}x{crop[1]} | {mp:.2f} | {1e3 * t_before:.2f} '
                  f'| {1e3 * t_after:.2f} | {1e3 * t_before / mp:.2f} | '
                  f'{1e3 * t_after / mp:.2f} | {t_after / t_before:.2f} |')
        if args.iters <= 0:
            return
        state = dict(hook_time=0.0, device=args.device)
        switch_hook_methods(state)
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
