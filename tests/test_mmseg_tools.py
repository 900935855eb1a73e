"""This project's configs, unchanged, through MMSeg's own entry points: the
tools/train.py and tools/test.py installed with MMSeg (``mmseg/.mim/tools``,
what ``mim train mmseg`` runs) and openmim's ``mim train`` / ``mim test``,
with no pre-step (on the OneDL fork, MMSeg's tools run through
``python -m mmseg_pat.run``, and openmim does not serve: README, "Which
OpenMMLab?"). Only ``--cfg-options`` shrink them for a CPU test."""
import os
import os.path as osp
import subprocess
import sys

import mmseg
import torch

from conftest import PROJECT, mmseg_tool

MMSEG_TOOLS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')
MIM = osp.join(osp.dirname(sys.executable), 'mim')


def _shrink(data_root, train_root=None):
    """--cfg-options: offline, 64 x 64 crops, 2 iterations, one validation
    image, every loader on ``data_root`` (the training set on
    ``train_root`` if given)."""
    options = [
        'model.backbone.init_cfg=None',
        'model.data_preprocessor.size=(64,64)',
        'train_dataloader.batch_size=2',
        # RandomResize and RandomCrop of the train pipeline, Resize of the
        # test pipeline
        'train_dataloader.dataset.pipeline.3.scale=(96,96)',
        'train_dataloader.dataset.pipeline.4.crop_size=(64,64)',
        'val_dataloader.dataset.pipeline.1.scale=(96,96)',
        'test_dataloader.dataset.pipeline.1.scale=(96,96)',
        'val_dataloader.dataset.indices=2',
        'test_dataloader.dataset.indices=2',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2',
        'custom_hooks.0.nproc=1',  # ClassCountsHook
    ]
    for loader in ('train', 'val', 'test'):
        options += [
            f'{loader}_dataloader.num_workers=0',
            f'{loader}_dataloader.persistent_workers=False',
            f'{loader}_dataloader.dataset.data_root='
            f'{train_root if loader == "train" and train_root else data_root}'
        ]
    return options


def _run(command):
    done = subprocess.run(command, cwd=PROJECT, capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout + done.stderr


def _checkpoint_records_the_run(path):
    ckpt = torch.load(path, weights_only=False)
    assert len(ckpt['meta']['class_counts']['counts']) == 3
    return ckpt


def test_mmseg_train_and_test_run_a_pat_config(tmp_path, oxford_pet_root):
    config = 'configs/pat/segformer_oxfordpet.py'
    work_dir = str(tmp_path / 'work')
    out = _run([*mmseg_tool('train.py'), config,
                '--work-dir', work_dir, '--cfg-options',
                *_shrink(oxford_pet_root)])
    assert 'PrevPredictionHook: memory of' in out
    assert 'counting the class pixels of the training set' in out
    assert 'tail_mIoU' in out
    ckpt = _checkpoint_records_the_run(osp.join(work_dir, 'iter_2.pth'))
    assert 'prev_prediction_memory' in ckpt

    # evaluation in the training's work dir (the tools' default): the
    # checkpoint is plain data, the training set is not needed
    # (its counts come from the checkpoint), and the prediction memory is
    # not touched
    memory = osp.join(work_dir, 'prev_prediction_memory', 'memory.u8')
    before = open(memory, 'rb').read()
    out = _run([*mmseg_tool('test.py'), config,
                osp.join(work_dir, 'iter_2.pth'), '--work-dir', work_dir,
                '--cfg-options',
                *_shrink(oxford_pet_root, str(tmp_path / 'no_train_set'))])
    assert 'taken from the checkpoint' in out
    assert 'tail_mIoU' in out
    assert open(memory, 'rb').read() == before


def test_mim_trains_and_tests_a_blv_config(tmp_path, oxford_pet_root):
    config = 'configs/blv/segformer_oxfordpet.py'
    work_dir = str(tmp_path / 'work')
    out = _run([MIM, 'train', 'mmseg', config, '--gpus', '0', '-y',
                '--work-dir', work_dir, '--cfg-options',
                *_shrink(oxford_pet_root)])
    assert 'decode.loss_blv' in out
    _checkpoint_records_the_run(osp.join(work_dir, 'iter_2.pth'))
    # evaluated from another work dir: the checkpoint is plain data
    out = _run([MIM, 'test', 'mmseg', config, '--checkpoint',
                osp.join(work_dir, 'iter_2.pth'), '--gpus', '0', '-y',
                '--work-dir', str(tmp_path / 'test'), '--cfg-options',
                *_shrink(oxford_pet_root)])
    assert 'head_mIoU' in out and 'tail_mIoU' in out
