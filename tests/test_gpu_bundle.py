"""The GPU check's helpers (tools/gpu/): the generated Cityscapes-like data
load through MMSeg's CityscapesDataset, and the summary table reads the
parts' outputs. (The check's no-CUDA path is in test_benchmarks.py.)"""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
from mmseg.datasets import CityscapesDataset

from conftest import PROJECT

GPU_TOOLS = osp.join(PROJECT, 'tools', 'gpu')


def test_generated_data_load_as_cityscapes(tmp_path):
    root = str(tmp_path / 'cityscapes_like')
    subprocess.run([
        sys.executable,
        osp.join(GPU_TOOLS, 'make_cityscapes_like.py'), root, '--train', '2',
        '--val', '1', '--size', '128x64'
    ], check=True, capture_output=True, timeout=120)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
    counts = np.zeros(256, np.int64)
    for split, expected in (('train', 2), ('val', 1)):
        dataset = CityscapesDataset(
            data_root=root,
            data_prefix=dict(img_path=f'leftImg8bit/{split}',
                             seg_map_path=f'gtFine/{split}'),
            pipeline=pipeline)
        assert len(dataset) == expected
        for i in range(len(dataset)):
            item = dataset[i]
            assert item['img'].shape == (64, 128, 3)
            label = item['gt_seg_map']
            assert label.shape == (64, 128)
            counts += np.bincount(label.ravel(), minlength=256)
    present = np.flatnonzero(counts[:19])
    assert set(np.unique(np.flatnonzero(counts))) <= set(range(19)) | {255}
    assert len(present) >= 15  # long-tailed, most classes present
    # road (0) is the most frequent class, as in Cityscapes.
    assert counts[:19].argmax() == 0


def test_summary_table_reads_the_parts(tmp_path):
    results, work = tmp_path / 'out', tmp_path / 'work'
    results.mkdir()
    (results / 'loss_speed_memory.log').write_text(
        '| N x C x H x W | CE ms | PAT ms | time ratio | CE MiB | PAT MiB | '
        'memory ratio |\n|---|---:|---:|---:|---:|---:|---:|\n'
        '| 2 x 19 x 512 x 1024 | 2.0 | 2.5 | 1.25 | 300 | 330 | 1.10 |\n')
    (results / 'hook_overhead.log').write_text(
        'some log line\n| repeat | step with (s) | hook methods (s) | '
        'paired ratio |\n|---:|---:|---:|---:|\n| 1 | 0.1 | 0.004 | 1.02 |\n'
        '| 2 | 0.1 | 0.006 | 1.04 |\n| 3 | 0.1 | 0.005 | 1.03 |\n')
    for loss, step in (('ce', 0.08), ('pat', 0.09)):
        vis = work / loss / '20260101_000000' / 'vis_data'
        vis.mkdir(parents=True)
        rows = [
            dict(iter=i, loss=1.0, time=step + 0.02, data_time=0.02,
                 memory=1000 if loss == 'ce' else 1100)
            for i in range(10, 101, 10)
        ]
        (vis / 'scalars.json').write_text('\n'.join(map(json.dumps, rows)))
    out = subprocess.run([
        sys.executable,
        osp.join(GPU_TOOLS, 'gpu_check_table.py'),
        str(results),
        str(work), '100', '--title', 'card X', '--status', 'train_ce=ok',
        'train_pat=ok', 'hook=ok', 'loss=ok'
    ], check=True, capture_output=True, text=True, timeout=60).stdout
    assert out == (results / 'gpu_check.md').read_text()
    lines = {line.split(' | ')[0]: line for line in out.splitlines()}
    assert out.startswith('card X\n')
    row = next(v for k, v in lines.items() if 'forward + backward' in k)
    assert '| 2.00 | 2.50 | 1.250 |' in row
    row = next(v for k, v in lines.items() if 'step: iteration' in k)
    assert '| 0.0800 | 0.0900 | 1.125 |' in row
    row = next(v for k, v in lines.items() if 'peak GPU memory' in k)
    assert '| 1000 | 1100 | 1.100 |' in row
    row = next(v for k, v in lines.items() if 'its own methods' in k)
    assert row.endswith('| - | 0.0050 | 1.030 |')
    assert 'n/a' not in out
    assert os.path.isfile(results / 'gpu_check.md')
