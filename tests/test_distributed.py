"""PrevPredictionHook with several CPU processes (gloo): two ranks on one
node, and two "nodes" on this machine, each with its own memory folder."""
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mmseg_pat.engine import PredictionMemory

from conftest import PROJECT
from model_configs import tiny_config
from write_recorder import check_reads

NUM_IMAGES = 12  # the tiny generated training set
GRID = (8, 8)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _config(tmp_path, shapes_root, name, max_iters, workers=0):
    cfg = tiny_config('segformer', str(tmp_path / name), shapes_root,
                      max_iters=max_iters, tmp_dir=str(tmp_path),
                      memory_grid=GRID)
    # deterministic model: no dropout or drop path
    cfg.model.backbone.drop_path_rate = 0.0
    cfg.model.decode_head.dropout_ratio = 0.0
    cfg.custom_imports = dict(
        imports=['mmseg_pat', 'write_recorder'], allow_failed_imports=False)
    cfg.custom_hooks += [dict(type='MemoryRecorderHook'),
                         dict(type='CurrentRecorderHook'),
                         # the resumed run loads the first run's checkpoint
                         dict(type='PlainCheckpointHook')]
    cfg.train_dataloader.num_workers = workers
    cfg.train_dataloader.persistent_workers = workers > 0
    cfg.default_hooks.checkpoint.interval = 4
    config = str(tmp_path / f'{name}.py')
    cfg.dump(config)
    return config, str(tmp_path / name)


def _env():
    return dict(os.environ, PYTHONPATH=osp.join(PROJECT, 'tests'),
                OMP_NUM_THREADS='1')


def _launch(config, nnodes, node_rank, nproc, port, *options,
            resume=False):
    """tools/dist_train.sh on one "node", as a user starts it on each."""
    cmd = ['bash', osp.join(PROJECT, 'tools', 'dist_train.sh'), config,
           str(nproc)] + (['--resume'] if resume else [])
    if options:
        cmd += ['--cfg-options', *options]
    env = dict(_env(), NNODES=str(nnodes), NODE_RANK=str(node_rank),
               MASTER_ADDR='127.0.0.1', PORT=str(port),
               PYTHON=sys.executable)
    return subprocess.Popen(cmd, env=env, cwd=PROJECT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait(processes):
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-4000:]
    return outputs


def _losses(work_dir):
    path = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))[-1]
    rows = [json.loads(line) for line in open(path)]
    return {r['iter']: r['decode.loss_pat'] for r in rows
            if 'decode.loss_pat' in r}


def test_two_ranks_share_one_memory(tmp_path, shapes_root):
    """One node, two ranks with persistent workers: every read is the
    value the last writer of that cell stored, whichever rank it was."""
    config, work_dir = _config(tmp_path, shapes_root, 'ddp', 6, workers=1)
    _wait([_launch(config, 1, 0, 2, _free_port())])
    table = check_reads(work_dir, NUM_IMAGES, GRID, world_size=2)
    assert np.all((table != 255).any(axis=1))  # 6 x 2 ranks x 2 images
    _, on_disk = PredictionMemory.load_file(
        osp.join(work_dir, 'prev_prediction_memory'))
    assert np.abs(on_disk.reshape(table.shape).astype(int) -
                  table).max() <= 1


def test_two_nodes_keep_identical_memories_and_resume(tmp_path,
                                                      shapes_root):
    """Two torchrun "nodes" on 127.0.0.1, one rank each, each writing its
    own memory folder: after training both folders hold the same memory
    with every image written, and a run resumed from the middle on both
    nodes ends exactly where the uninterrupted one did."""

    def run(name, *options, resume=False):
        config, work_dir = _config(tmp_path, shapes_root, name, 8)
        port = _free_port()
        nodes = [
            _launch(config, 2, rank, 1, port,
                    f'custom_hooks.0.memory_dir={tmp_path}/{name}_node{rank}',
                    *options, resume=resume) for rank in (0, 1)
        ]
        _wait(nodes)
        memories = [
            PredictionMemory.load_file(str(tmp_path / f'{name}_node{r}'))[1]
            for r in (0, 1)
        ]
        return work_dir, memories

    full_dir, full = run('full')
    assert np.array_equal(full[0], full[1])
    assert np.all((full[0] != 255).any(axis=(1, 2)))
    table = check_reads(full_dir, NUM_IMAGES, GRID, world_size=2)
    assert np.abs(full[0].reshape(table.shape).astype(int) - table).max() <= 1

    resumed_dir, resumed = run(
        'resumed', f'load_from={full_dir}/iter_4.pth', resume=True)
    assert np.array_equal(resumed[0], resumed[1])
    assert np.array_equal(resumed[0], full[0])
    full_losses, losses = _losses(full_dir), _losses(resumed_dir)
    assert sorted(losses) == [5, 6, 7, 8]
    np.testing.assert_allclose([losses[i] for i in (5, 6, 7, 8)],
                               [full_losses[i] for i in (5, 6, 7, 8)],
                               rtol=1e-5)


@pytest.mark.parametrize('script, args', [
    ('slurm_train.sh', ['part', 'job', 'cfg.py', '--amp']),
    ('slurm_test.sh', ['part', 'job', 'cfg.py', 'ckpt.pth', '--tta']),
])
def test_slurm_scripts_start_one_task_per_gpu(tmp_path, script, args):
    """With a stand-in for srun that prints what it was asked to run."""
    srun = tmp_path / 'srun'
    srun.write_text('#!/bin/sh\necho "$@"\n')
    srun.chmod(0o755)
    env = dict(os.environ, PATH=f'{tmp_path}:{os.environ["PATH"]}', GPUS='8',
               GPUS_PER_NODE='4')
    done = subprocess.run(['bash', osp.join(PROJECT, 'tools', script), *args],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    assert words[:2] == ['-p', 'part'] and '--job-name=job' in words
    assert '--gres=gpu:4' in words and '--ntasks=8' in words
    tool = 'train.py' if 'train' in script else 'test.py'
    start = next(i for i, w in enumerate(words) if w.endswith(tool))
    assert words[start + 1:] == args[2:3] + args[3:-1] + [
        '--launcher=slurm', args[-1]]


def test_a_restore_failure_stops_every_rank(tmp_path, shapes_root):
    """Two ranks resume from a checkpoint whose memory snapshot is corrupt:
    both stop with the reason, none is left waiting in a collective."""
    config, work_dir = _config(tmp_path, shapes_root, 'first', 4)
    _wait([_launch(config, 1, 0, 2, _free_port())])
    ckpt = torch.load(osp.join(work_dir, 'iter_4.pth'), weights_only=False)
    ckpt['prev_prediction_memory']['table'].view(-1)[0] += 1
    torch.save(ckpt, str(tmp_path / 'corrupt.pth'))
    config, _ = _config(tmp_path, shapes_root, 'resumed', 6)
    start = time.time()
    done = _launch(config, 1, 0, 2, _free_port(),
                   f'load_from={tmp_path}/corrupt.pth', resume=True)
    out = done.communicate(timeout=300)[0]
    assert done.returncode != 0
    assert out.count("prediction-memory snapshot is corrupt") >= 2, out[-3000:]
    assert time.time() - start < 240  # no rank hung until a timeout
