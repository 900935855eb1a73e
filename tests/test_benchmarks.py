"""The benchmark scripts still run: the hook benchmark in a tiny setting
(its numbers are not checked here; benchmarks/README.md has them) and the
GPU check's CPU-only path."""
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


def test_hook_overhead_runs_and_times_the_hook():
    result = _run([
        sys.executable,
        osp.join('benchmarks', 'hook_overhead.py'), '--crops', '64x64',
        '96x128', '--iters', '4', '--repeats', '1', '--rounds', '1'
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    sweep = [line.split('|')[1:-1] for line in lines
             if re.match(r'\| \d+x\d+ \|', line)]
    assert [row[0].strip() for row in sweep] == ['64x64', '96x128']
    for row in sweep:
        megapixels, before, after = (float(v) for v in row[1:4])
        assert megapixels == pytest.approx(
            2 * np.prod([int(v) for v in row[0].split('x')]) / 1e6, abs=0.01)
        assert before > 0 and after > 0
    rows = [line.split('|')[1:-1] for line in lines
            if re.match(r'\| \d+ \|', line)]
    assert len(rows) == 1
    values = [float(v) for v in rows[0][1:7]]
    step_without, step_with, _, data_without, data_with, hook = values
    assert min(step_without, step_with, data_without, data_with) > 0
    assert hook > 0  # the hook ran on the iterations counted as "with"
    assert 'paired ratio: median' in result.stdout
    assert '16 KiB per image' in result.stdout


def test_gpu_check_skips_without_cuda():
    result = _run(['bash', osp.join('benchmarks', 'gpu_check.sh'), '2'],
                  CUDA_VISIBLE_DEVICES='', PYTHON=sys.executable)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'no CUDA device on this machine; skipping' in result.stdout
