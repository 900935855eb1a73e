"""Two CPU processes (gloo) train together with PrevPredictionHook."""
import json
import os
import os.path as osp
import subprocess
import sys
from collections import defaultdict

import numpy as np

from conftest import PROJECT
from model_configs import tiny_config


def test_two_ranks_share_the_memory(tmp_path, shapes_root):
    work_dir = str(tmp_path / 'work')
    cfg = tiny_config('segformer', work_dir, shapes_root, max_iters=6,
                      tmp_dir=str(tmp_path), memory_grid=(8, 8))
    cfg.custom_imports = dict(
        imports=['mmseg_pat', 'write_recorder'], allow_failed_imports=False)
    cfg.custom_hooks.append(dict(type='WriteRecorderHook'))
    cfg.train_dataloader.num_workers = 1
    cfg.train_dataloader.persistent_workers = True
    config = str(tmp_path / 'ddp.py')
    cfg.dump(config)

    env = dict(os.environ, PYTHONPATH=osp.join(PROJECT, 'tests'),
               OMP_NUM_THREADS='1')
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        '--master_port=29517',
        osp.join(PROJECT, 'tools', 'train.py'), config, '--launcher',
        'pytorch'
    ]
    done = subprocess.run(cmd, env=env, cwd=PROJECT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    writes = defaultdict(dict)
    for rank in (0, 1):
        with open(osp.join(work_dir, f'writes_rank{rank}.jsonl')) as f:
            for line in f:
                record = json.loads(line)
                writes[record['iter']][rank] = set(record['images'])
    assert sorted(writes) == list(range(6))
    for per_rank in writes.values():
        assert len(per_rank) == 2
        assert not per_rank[0] & per_rank[1]  # never the same image
    memory = np.fromfile(
        osp.join(work_dir, 'prev_prediction_memory', 'memory.u8'),
        dtype=np.uint8).reshape(12, 8, 8)
    written = set().union(*(r[0] | r[1] for r in writes.values()))
    assert written == set(range(12))  # 6 iterations x 2 ranks x 2 images
    assert np.all((memory != 255).any(axis=(1, 2)))
