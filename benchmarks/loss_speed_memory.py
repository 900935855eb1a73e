"""Forward+backward time and peak memory of PATLoss relative to MMSeg's
CrossEntropyLoss, measured side by side in one run.

Time: the median of alternating repeats (CE, PAT, CE, PAT, ...).
Memory: each loss in a fresh process; on CPU, the rise of the peak resident
set (VmHWM, reset through /proc/self/clear_refs) above the resident set
before the step, with glibc told to return every large block to the system
at once so that freed memory is not mistaken for a smaller peak; on CUDA,
``torch.cuda.max_memory_allocated`` above the allocation before the step.
The logits and labels exist before either loss runs and are not counted.

Usage: python benchmarks/loss_speed_memory.py [--device cuda] [--repeats 7]
"""
import argparse
import ctypes
import statistics
import subprocess
import sys
import time

import torch
from mmseg.registry import MODELS

import mmseg_pat  # noqa: F401  (registers PATLoss)

# Sections of (N, C, H, W) cases: the target case (Cityscapes crops), then
# the number of classes and the resolution growing.
CASES = {
    'target: Cityscapes crop': [(2, 19, 512, 1024)],
    'classes grow (512 x 512)':
    [(2, c, 512, 512) for c in (3, 13, 19, 59, 150)],
    'resolution grows (C = 19)': [(2, 19, 256, 256), (2, 19, 512, 512),
                                  (2, 19, 1024, 1024), (2, 19, 1024, 2048)],
}
LOSSES = {
    'CE': dict(type='CrossEntropyLoss', loss_weight=1.0),
    'PAT': dict(type='PATLoss'),
}


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
    loss = loss_module(logits, label, ignore_index=255)
    loss.backward()
    return loss


def make_inputs(case, device):
    n, c, h, w = case
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(n, c, h, w, generator=g).to(device).requires_grad_()
    label = torch.randint(0, c, (n, h, w), generator=g)
    label[:, :h // 10] = 255  # some ignored pixels, as in real labels
    return logits, label.to(device)


def median_times_ms(modules, case, device, repeats):
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
    module = MODELS.build(LOSSES[loss])
    logits, label = make_inputs(case, device)
    step(module, logits, label)  # warm-up
    logits.grad = None
    with PeakMemory(device) as peak:
        step(module, logits, label)
    print(f'{peak.mib:.3f}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument(
        '--memory-of',
        nargs=5,
        metavar=('LOSS', 'N', 'C', 'H', 'W'),
        help='internal: print the peak memory of one step and exit')
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.memory_of:
        loss, *case = args.memory_of
        print_peak_memory(loss, tuple(map(int, case)), device)
        return
    print(f'device: {device}, torch {torch.__version__}, '
          f'threads: {torch.get_num_threads()}, repeats: {args.repeats}')
    modules = {k: MODELS.build(v) for k, v in LOSSES.items()}
    for section, cases in CASES.items():
        print(f'\n{section}\n')
        print('| N x C x H x W | CE ms | PAT ms | time ratio | CE MiB | '
              'PAT MiB | memory ratio |')
        print('|---|---:|---:|---:|---:|---:|---:|')
        for case in cases:
            t = median_times_ms(modules, case, device, args.repeats)
            m = {k: peak_memory_mib(k, case, device) for k in LOSSES}
            print(f"| {' x '.join(map(str, case))} | {t['CE']:.1f} | "
                  f"{t['PAT']:.1f} | {t['PAT'] / t['CE']:.2f} | "
                  f"{m['CE']:.0f} | {m['PAT']:.0f} | "
                  f"{m['PAT'] / m['CE']:.2f} |")


if __name__ == '__main__':
    main()
