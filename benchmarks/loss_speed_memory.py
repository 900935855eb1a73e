"""Forward+backward time and peak memory of the package's losses relative
to MMSeg's CrossEntropyLoss, measured side by side in one run.

The reference is ``CrossEntropyLoss(avg_non_ignore=True)``, the mean over
the valid pixels that every loss of this package computes; the inputs have
16 ignored rows per image, as real labels have some.

Time: the median of interleaved repeats (CE, PAT, WCE, ..., CE, PAT, ...),
and each loss's ratio to CE is the ratio of the medians: the machine's
speed drifts, so only losses timed side by side compare.
Memory (CE and PAT): each loss in a fresh process; on CPU, the rise of the
peak resident set (VmHWM, reset through /proc/self/clear_refs) above the
resident set before the step, with glibc told to return every large block
to the system at once so that freed memory is not mistaken for a smaller
peak; on CUDA, ``torch.cuda.max_memory_allocated`` above the allocation
before the step. The logits and labels exist before either loss runs and
are not counted.

``--guard RATIO`` is the CI regression check: only PAT vs CE at the
Cityscapes crop 2 x 19 x 512 x 1024, exit status 1 when the ratio of the
medians exceeds RATIO in each of up to three rounds (noise from other
processes passes in one of them, a regression fails in all).

Usage: python benchmarks/loss_speed_memory.py [--device cuda] [--repeats 7]
       python benchmarks/loss_speed_memory.py --guard 1.25
"""
import argparse
import ctypes
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings

import torch
from mmengine.logging import MMLogger
from mmseg.registry import MODELS

import mmseg_pat  # noqa: F401  (registers the package's losses)

# Sections of (N, C, H, W) cases: the targets (Cityscapes crops; many
# small-class crops), then the number of classes and the resolution
# growing.
CASES = {
    'targets': [(2, 19, 512, 1024), (8, 3, 512, 512)],
    'classes grow (512 x 512)':
    [(2, c, 512, 512) for c in (3, 13, 19, 59, 150)],
    'resolution grows (C = 19)': [(2, 19, 256, 256), (2, 19, 512, 512),
                                  (2, 19, 1024, 1024), (2, 19, 1024, 2048)],
}
GUARD_CASE = (2, 19, 512, 1024)
IGNORED_ROWS = 16
# Each loss as a config for C classes; the class counts of the baselines
# that need them fall by half from one class to the next (long-tailed).
LOSSES = {
    'CE': lambda c: dict(type='CrossEntropyLoss', avg_non_ignore=True),
    'PAT': lambda c: dict(type='PATLoss'),
    'WCE': lambda c: dict(type='WeightedCrossEntropyLoss',
                          class_counts=_long_tail(c)),
    'focal': lambda c: dict(type='SoftmaxFocalLoss'),
    'LA': lambda c: dict(type='LogitAdjustedLoss',
                         class_counts=_long_tail(c)),
    'BLV': lambda c: dict(type='BLVLoss', class_counts=_long_tail(c)),
    'recall': lambda c: dict(type='RecallLoss'),
}
#: MMSeg's region losses as the study uses them (``--mmseg-region-losses``):
#: CE + Dice (MMSeg's documented 1.0 + 3.0) and Lovasz-softmax.
REGION_LOSSES = {
    'dice+CE': lambda c: [
        dict(type='CrossEntropyLoss', loss_name='loss_ce'),
        dict(type='DiceLoss', use_sigmoid=False, loss_weight=3.0)
    ],
    'lovasz': lambda c: dict(
        type='LovaszLoss',
        loss_type='multi_class',
        per_image=False,
        reduction='none'),
}
MEMORY_LOSSES = ('CE', 'PAT')


class SumOfLosses(torch.nn.Module):
    """Losses added up, as MMSeg adds a head's ``loss_decode`` list."""

    def __init__(self, losses):
        super().__init__()
        self.losses = torch.nn.ModuleList(losses)

    def forward(self, *args, **kwargs):
        return sum(loss(*args, **kwargs) for loss in self.losses)


def _case(text):
    return tuple(int(v) for v in text.split('x'))


def _long_tail(num_classes):
    return [2**max(40 - k, 0) for k in range(num_classes)]


def build(loss, num_classes):
    """A loss module in training mode (BLV perturbs only then)."""
    settings = {**LOSSES, **REGION_LOSSES}[loss](num_classes)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # MMSeg's avg_non_ignore notice
        if isinstance(settings, list):
            return SumOfLosses([MODELS.build(s) for s in settings]).train()
        return MODELS.build(settings).train()


def release_large_blocks_at_once():
    """From now on blocks over 64 KiB come from mmap and go back to the
    system on free, so the resident set tracks live memory. Only memory is
    measured in such a process: the page faults would slow the timings."""
    m_mmap_threshold = -3
    ctypes.CDLL('libc.so.6').mallopt(m_mmap_threshold, 64 * 1024)


def _rss_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


class PeakMemory:
    """Peak memory (MiB) above the level at ``__enter__``."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # reset VmHWM to the current RSS
            self.base = _rss_kib('VmRSS:') * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _rss_kib('VmHWM:') * 1024
        self.mib = (peak - self.base) / 2**20


def step(loss_module, logits, label):
    logits.grad = None
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # PAT without its hook, said once
        loss = loss_module(logits, label, ignore_index=255)
    loss.backward()
    return loss


def make_inputs(case, device):
    n, c, h, w = case
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(n, c, h, w, generator=g).to(device).requires_grad_()
    label = torch.randint(0, c, (n, h, w), generator=g)
    label[:, :IGNORED_ROWS] = 255  # some ignored pixels, as in real labels
    return logits, label.to(device)


def median_times_ms(losses, case, device, repeats):
    """Median time of each loss, the losses interleaved in every repeat."""
    modules = {name: build(name, case[1]) for name in losses}
    logits, label = make_inputs(case, device)
    times = {k: [] for k in modules}
    for module in modules.values():
        step(module, logits, label)  # warm-up
    for _ in range(repeats):
        for name, module in modules.items():
            if device.type == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(module, logits, label)
            if device.type == 'cuda':
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def peak_memory_mib(loss, case, device):
    """Peak memory of one step, measured in a fresh process."""
    cmd = [
        sys.executable, __file__, '--device',
        str(device), '--memory-of', loss, *map(str, case)
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def print_peak_memory(loss, case, device):
    if device.type == 'cpu':
        release_large_blocks_at_once()
    module = build(loss, case[1])
    logits, label = make_inputs(case, device)
    step(module, logits, label)  # warm-up
    logits.grad = None
    with PeakMemory(device) as peak:
        step(module, logits, label)
    print(f'{peak.mib:.3f}')


def _ratio(a, b):
    return f'{a / b:.2f}' if b > 0 else 'n/a'


def load():
    return ' '.join(f'{v:.2f}' for v in os.getloadavg())


def guard(limit, case, device, repeats, rounds=3):
    """Exit status of the regression check: 0 if PAT / CE <= ``limit`` in
    one of ``rounds`` rounds of ``repeats`` interleaved repeats."""
    name = ' x '.join(map(str, case))
    for i in range(1, rounds + 1):
        t = median_times_ms(('CE', 'PAT'), case, device, repeats)
        ratio = t['PAT'] / t['CE']
        print(f'round {i}: {name}, CE {t["CE"]:.1f} ms, PAT {t["PAT"]:.1f} '
              f'ms, PAT / CE = {ratio:.3f} (limit {limit}; load {load()})')
        if ratio <= limit:
            print('guard passed')
            return 0
    print(f'guard FAILED: PATLoss / CrossEntropyLoss above {limit} in '
          f'{rounds} rounds; see benchmarks/README.md')
    return 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument(
        '--guard',
        type=float,
        metavar='RATIO',
        help='only PAT vs CE at 2 x 19 x 512 x 1024: exit 1 above RATIO')
    parser.add_argument(
        '--cases',
        nargs='+',
        type=_case,
        metavar='NxCxHxW',
        help='time these cases instead (the first one with --guard)')
    parser.add_argument(
        '--mmseg-region-losses',
        action='store_true',
        help="also time MMSeg's CE + Dice and Lovasz (slow on large cases)")
    parser.add_argument(
        '--memory-of',
        nargs=5,
        metavar=('LOSS', 'N', 'C', 'H', 'W'),
        help='internal: print the peak memory of one step and exit')
    args = parser.parse_args()
    device = torch.device(args.device)
    # PATLoss's notice that it runs without its hook (MMEngine's logger)
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    if args.memory_of:
        loss, *case = args.memory_of
        print_peak_memory(loss, tuple(map(int, case)), device)
        return 0
    print(f'device: {device}, torch {torch.__version__}, '
          f'threads: {torch.get_num_threads()}, repeats: {args.repeats}, '
          f'load average (1, 5, 15 min): {load()}')
    if args.guard is not None:
        case = args.cases[0] if args.cases else GUARD_CASE
        return guard(args.guard, case, device, args.repeats)
    losses = dict(LOSSES,
                  **(REGION_LOSSES if args.mmseg_region_losses else {}))
    others = [k for k in losses if k not in ('CE', 'PAT')]
    sections = {'cases': args.cases} if args.cases else CASES
    for section, cases in sections.items():
        print(f'\n{section}\n')
        print('| N x C x H x W | CE ms | PAT ms | PAT / CE | CE MiB | PAT MiB '
              '| memory ratio | ' + ' | '.join(f'{k} / CE' for k in others) +
              ' |')
        print('|---|' + '---:|' * (6 + len(others)))
        for case in cases:
            t = median_times_ms(losses, case, device, args.repeats)
            m = {k: peak_memory_mib(k, case, device) for k in MEMORY_LOSSES}
            print(f"| {' x '.join(map(str, case))} | {t['CE']:.1f} | "
                  f"{t['PAT']:.1f} | {t['PAT'] / t['CE']:.2f} | "
                  f"{m['CE']:.0f} | {m['PAT']:.0f} | "
                  f"{_ratio(m['PAT'], m['CE'])} | " +
                  ' | '.join(f'{t[k] / t["CE"]:.2f}' for k in others) + ' |')
    print(f'\nload average at the end: {load()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
