"""The benchmark scripts still run: the loss and hook benchmarks in tiny
settings (their numbers are not checked here; benchmarks/README.md has
them), the loss benchmark's CI guard both ways, and the GPU check's
CPU-only path."""
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import PROJECT


def _run(command, **env):
    return subprocess.run(
        command,
        cwd=PROJECT,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=600)


def _loss_benchmark(*args):
    return _run([
        sys.executable,
        osp.join('benchmarks', 'loss_speed_memory.py'), *args
    ])


def test_loss_benchmark_times_every_loss_against_ce():
    result = _loss_benchmark('--cases', '2x3x32x32', '1x5x16x24',
                             '--repeats', '1')
    assert result.returncode == 0, result.stderr[-3000:]
    header, *rows = [line.split('|')[1:-1]
                     for line in result.stdout.splitlines()
                     if line.startswith('| ')]
    assert [h.strip() for h in header] == [
        'N x C x H x W', 'CE ms', 'PAT ms', 'PAT / CE', 'CE MiB', 'PAT MiB',
        'memory ratio', 'WCE / CE', 'focal / CE', 'LA / CE', 'BLV / CE',
        'recall / CE'
    ]
    assert [row[0].strip() for row in rows] == ['2 x 3 x 32 x 32',
                                                '1 x 5 x 16 x 24']
    for row in rows:
        times = [float(row[i]) for i in (1, 2, 3, 7, 8, 9, 10, 11)]
        assert min(times) > 0
    assert 'load average' in result.stdout


def test_loss_benchmark_times_mmseg_region_losses_on_request():
    """--mmseg-region-losses adds MMSeg's CE + Dice and Lovasz, built from
    the registry as the study uses them."""
    result = _loss_benchmark('--cases', '1x3x32x32', '--repeats', '1',
                             '--mmseg-region-losses')
    assert result.returncode == 0, result.stderr[-3000:]
    header, row = [line.split('|')[1:-1]
                   for line in result.stdout.splitlines()
                   if line.startswith('| ')]
    header = [h.strip() for h in header]
    assert header[-2:] == ['dice+CE / CE', 'lovasz / CE']
    assert float(row[-1]) > 0 and float(row[-2]) > 0


@pytest.mark.parametrize('limit,status,verdict', [('1000', 0, 'guard passed'),
                                                  ('0.001', 1,
                                                   'guard FAILED')])
def test_loss_guard_exit_status(limit, status, verdict):
    """The CI guard (make benchmark-guard) passes or fails on the ratio;
    here on a tiny case with limits no timing can miss."""
    result = _loss_benchmark('--guard', limit, '--cases', '1x3x16x16',
                             '--repeats', '1')
    assert result.returncode == status, result.stderr[-3000:]
    assert verdict in result.stdout
    assert 'PAT / CE = ' in result.stdout


def test_hook_overhead_runs_and_times_the_hook():
    result = _run([
        sys.executable,
        osp.join('benchmarks', 'hook_overhead.py'), '--crops', '64x64',
        '96x128', '--iters', '4', '--sweep-iters', '4', '--repeats', '1'
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    sweep = [line.split('|')[1:-1] for line in lines
             if re.match(r'\| \d+x\d+ \|', line)]
    assert [row[0].strip() for row in sweep] == ['64x64', '96x128']
    for row in sweep:
        megapixels, hook_ms, per_mp = (float(v) for v in row[1:4])
        assert megapixels == pytest.approx(
            2 * np.prod([int(v) for v in row[0].split('x')]) / 1e6, abs=0.01)
        # the real hook's methods ran on the iterations counted as "with"
        assert hook_ms > 0 and per_mp > 0
    rows = [line.split('|')[1:-1] for line in lines
            if re.match(r'\| \d+ \|', line)]
    assert len(rows) == 1
    values = [float(v) for v in rows[0][1:7]]
    step_without, step_with, _, data_without, data_with, hook = values
    assert min(step_without, step_with, data_without, data_with) > 0
    assert hook > 0
    assert 'paired ratio: median' in result.stdout
    assert '16 KiB per image' in result.stdout


def test_gpu_check_skips_without_cuda():
    result = _run(['bash', osp.join('benchmarks', 'gpu_check.sh'), '2'],
                  CUDA_VISIBLE_DEVICES='', PYTHON=sys.executable)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'no CUDA device on this machine; skipping' in result.stdout
