"""Real runs: what a user runs, small.

MMSeg zoo configs of several families, switched to PAT with exactly the
README's two edits, train through MMSeg's own ``tools/train.py`` on MMSeg's
loader settings as the configs give them (``num_workers=2``,
``persistent_workers=True``, the ``InfiniteSampler`` of the
iteration-based loop) over two passes of a small generated Cityscapes set,
stop, resume with ``--resume`` for two more passes, and the checkpoint is
then read by torch's safe loader and by MMSeg's inference API. Only the
model is shrunk (tiny crops, narrow backbones) and nothing downloads.
"""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import mmseg
import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from conftest import PROJECT
from fake_datasets import load_converter, make_cityscapes
from model_configs import tiny_config
from zoo_models import (ZOO_MODELS, shrink_model, small_crops, switch_to_pat,
                        zoo_config)

MMSEG_TRAIN = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools',
                       'train.py')
TRAIN_FRAMES = 4
BATCH = 2
PASS = TRAIN_FRAMES // BATCH  # iterations in one pass over the data
FIRST, LAST = 2 * PASS, 4 * PASS  # the first run stops, the resumed ends
# families beyond the seven the in-process zoo test names are here too
FAMILIES = list(ZOO_MODELS)


@pytest.fixture(scope='module')
def street_root(tmp_path_factory):
    """A generated Cityscapes data root with four training frames."""
    root = str(tmp_path_factory.mktemp('real_runs') / 'cityscapes')
    make_cityscapes(root, frames=dict(
        train=[f'aachen_{i:06d}_000019' for i in range(TRAIN_FRAMES)],
        val=['frankfurt_000000_000294']))
    load_converter('cityscapes').convert_cityscapes(osp.join(root, 'gtFine'))
    return root


def _write_config(name: str, data_root: str, folder: str) -> str:
    """The zoo config with the two edits, a small model and data; the
    loaders keep the zoo's workers, persistence and samplers."""
    config, model_options = ZOO_MODELS[name]
    cfg = zoo_config(config)
    switch_to_pat(cfg)
    shrink_model(cfg, model_options)
    small_crops(cfg, data_root)
    loader = cfg.train_dataloader
    assert loader.num_workers > 0 and loader.persistent_workers
    assert loader.sampler.type == 'InfiniteSampler'
    loader.batch_size = BATCH
    for part in ('val', 'test'):
        cfg[f'{part}_dataloader'].dataset.data_root = data_root
        for step in cfg[f'{part}_dataloader'].dataset.pipeline:
            if step.type == 'Resize':
                step.scale = (256, 128)
    cfg.train_cfg.update(max_iters=FIRST, val_interval=LAST)
    cfg.default_hooks.checkpoint.update(interval=PASS, by_epoch=False)
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0)
    path = osp.join(folder, f'{name}_pat.py')
    cfg.dump(path)
    return path


def _mmseg_train(config: str, work_dir: str, *options: str) -> str:
    done = subprocess.run(
        [sys.executable, MMSEG_TRAIN, config, '--work-dir', work_dir,
         *options], cwd=PROJECT, capture_output=True, text=True,
        timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    return out


def _iterations(log: str):
    return [int(i) for i in re.findall(r'Iter\(train\) \[\s*(\d+)/', log)]


@pytest.mark.parametrize('name', FAMILIES)
def test_two_edit_zoo_config_trains_resumes_and_serves(
        name, street_root, tmp_path):
    config = _write_config(name, street_root, str(tmp_path))
    work_dir = str(tmp_path / 'work')

    log = _mmseg_train(config, work_dir)
    assert _iterations(log) == list(range(1, FIRST + 1))
    assert 'PrevPredictionHook: added to the training pipeline' in log

    log = _mmseg_train(config, work_dir, '--resume', '--cfg-options',
                       f'train_cfg.max_iters={LAST}')
    assert f'memory restored at iteration {FIRST}' in log
    assert _iterations(log) == list(range(FIRST + 1, LAST + 1))
    assert 'mIoU' in log  # validated at the end

    checkpoint = osp.join(work_dir, f'iter_{LAST}.pth')
    saved = torch.load(checkpoint, weights_only=True)
    memory = saved['prev_prediction_memory']
    # every training image was written (four passes over four images)
    table = memory['table'].reshape(TRAIN_FRAMES, -1)
    assert bool((table != 255).any(1).all())
    history = saved['message_hub']['log_scalars']['train/loss']
    assert len(history['log_history']) == LAST  # both runs' losses

    from mmseg.apis import inference_model, init_model
    model = init_model(config, checkpoint, device='cpu')
    image = osp.join(street_root, 'leftImg8bit', 'val', 'frankfurt',
                     'frankfurt_000000_000294_leftImg8bit.png')
    result = inference_model(model, image)
    prediction = result.pred_sem_seg.data[0].numpy()
    assert prediction.shape == (64, 128)
    assert np.all((prediction >= 0) & (prediction < 19))


# -- the loader, the loops and resume, in process ---------------------------
class OrderProbe(Hook):
    """The sample indices of every training batch, in order."""

    def __init__(self):
        self.order = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        samples = data_batch['data_samples']
        self.order.append([int(s.metainfo['sample_idx']) for s in samples])


def _two_edit_tiny(work_dir, root, loss, max_iters, workers=2,
                   persistent=True, tmp_dir=None):
    """The tiny SegFormer on the generated shapes with the config's
    InfiniteSampler; ``loss`` PAT adds the hook alone (the two edits)."""
    os.makedirs(tmp_dir or work_dir, exist_ok=True)
    cfg = tiny_config('segformer', work_dir, root, max_iters=max_iters,
                      loss=loss, tmp_dir=tmp_dir)
    cfg.train_dataloader.update(num_workers=workers,
                                persistent_workers=persistent)
    if loss['type'] == 'PATLoss':
        cfg.custom_hooks = [dict(type='PrevPredictionHook', grid=(4, 4))]
    return cfg


def _run(cfg, probe=None):
    runner = Runner.from_cfg(cfg)
    if probe is not None:
        runner.register_hook(probe)
    runner.train()
    return runner


@pytest.mark.parametrize('diff_rank_seed', [False, True])
def test_rebuilt_loader_keeps_the_configs_data_order(tmp_path, shapes_root,
                                                     diff_rank_seed):
    """The hook completes the pipeline and the loop is built again; the
    batches come in the order the config's sampler gives a run without
    PAT, over more than two passes, with persistent workers, whether the
    sampler takes the run's seed or (``diff_rank_seed``) draws its own."""
    orders = {}
    for loss in ('CrossEntropyLoss', 'PATLoss'):
        probe = OrderProbe()
        cfg = _two_edit_tiny(str(tmp_path / loss), shapes_root,
                             dict(type=loss), max_iters=14)
        cfg.randomness = dict(seed=0, diff_rank_seed=diff_rank_seed)
        runner = _run(cfg, probe)
        orders[loss] = probe.order
    assert orders['PATLoss'] == orders['CrossEntropyLoss']
    assert len({i for batch in orders['PATLoss'] for i in batch}) == 12
    transforms = runner.train_dataloader.dataset.pipeline.transforms
    assert type(transforms[-1]).__name__ == 'PackSegInputsWithOrigins'


@pytest.mark.parametrize('loop,workers,persistent', [
    ('epoch', 2, True),
    ('epoch', 2, False),
    ('epoch', 0, False),
    ('iter', 2, False),
    ('iter', 0, False),
])
def test_loops_and_loaders_train_and_resume(tmp_path, shapes_root, loop,
                                            workers, persistent):
    """Both MMEngine loops, workers on and off, persistent or not: three
    passes, then --resume for two more; the memory goes on where it was."""
    def config(max_steps):
        cfg = _two_edit_tiny(str(tmp_path / 'w'), shapes_root,
                             dict(type='PATLoss'), 1, workers, persistent,
                             tmp_dir=str(tmp_path))
        if loop == 'epoch':
            cfg.train_dataloader.sampler = dict(type='DefaultSampler',
                                                shuffle=True)
            cfg.train_cfg = dict(type='EpochBasedTrainLoop',
                                 max_epochs=max_steps, val_interval=100)
            cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                                interval=1)
        else:
            cfg.train_cfg = dict(type='IterBasedTrainLoop',
                                 max_iters=6 * max_steps, val_interval=100)
            cfg.default_hooks.checkpoint = dict(
                type='CheckpointHook', by_epoch=False, interval=6)
        return cfg

    probe = OrderProbe()
    first = _run(config(3), probe)
    assert len(probe.order) == 18  # 12 images, batch 2, three passes
    table = _hook(first).memory.table.clone()
    assert bool((table != 255).flatten(1).any(1).all())

    cfg = config(5)
    cfg.resume = True
    probe = OrderProbe()
    resumed = _run(cfg, probe)
    assert len(probe.order) == 12 and resumed.iter == 30
    log = open(resumed.logger.log_file).read()
    assert 'memory restored at iteration 18' in log


def _hook(runner):
    return next(h for h in runner.hooks
                if type(h).__name__ == 'PrevPredictionHook')


def test_hook_listed_twice_refused(tmp_path, shapes_root):
    cfg = _two_edit_tiny(str(tmp_path), shapes_root, dict(type='PATLoss'), 1)
    cfg.custom_hooks.append(dict(type='PrevPredictionHook',
                                 memory_dir=str(tmp_path / 'second')))
    with pytest.raises(ValueError, match='listed 2 times in custom_hooks'):
        _run(cfg)
    assert not osp.exists(tmp_path / 'second')


def test_resume_without_its_checkpoint_names_those_there(tmp_path,
                                                         shapes_root):
    cfg = _two_edit_tiny(str(tmp_path / 'w'), shapes_root,
                         dict(type='PATLoss'), 4, tmp_dir=str(tmp_path))
    cfg.default_hooks.checkpoint.interval = 2
    _run(cfg)
    os.remove(tmp_path / 'w' / 'iter_4.pth')  # the newest is gone
    cfg.resume = True
    with pytest.raises(FileNotFoundError) as error:
        _run(cfg)
    message = str(error.value)
    assert 'iter_4.pth does not exist' in message
    assert str(tmp_path / 'w' / 'iter_2.pth') in message
    assert f'--resume {tmp_path / "w" / "iter_2.pth"}' in message


def test_copied_work_dir_resumes_from_its_own_files(tmp_path, shapes_root):
    cfg = _two_edit_tiny(str(tmp_path / 'w'), shapes_root,
                         dict(type='PATLoss'), 4, tmp_dir=str(tmp_path))
    cfg.default_hooks.checkpoint.interval = 2
    _run(cfg)
    shutil.copytree(tmp_path / 'w', tmp_path / 'copy')
    # the original's last checkpoint differs from the copy's: the copy
    # must resume from its own
    original = tmp_path / 'w' / 'iter_4.pth'
    torch.save({'meta': {'iter': 999}}, str(original))
    cfg = _two_edit_tiny(str(tmp_path / 'copy'), shapes_root,
                         dict(type='PATLoss'), 6, tmp_dir=str(tmp_path))
    cfg.resume = True
    runner = _run(cfg)
    assert runner.iter == 6
    log = open(runner.logger.log_file).read()
    assert 'resuming from the copy here' in log
    assert 'memory restored at iteration 4' in log
    with open(tmp_path / 'copy' / 'last_checkpoint') as f:
        assert f.read().startswith(str(tmp_path / 'copy'))


def test_loss_list_with_pat_trains_and_writes_the_memory(tmp_path,
                                                         shapes_root):
    """A head whose loss_decode is a list (PATLoss beside MMSeg's Dice
    loss, as MMSeg users combine losses): the memory is written from the
    PATLoss of the list, and both losses reach the log."""
    cfg = _two_edit_tiny(str(tmp_path), shapes_root, dict(type='PATLoss'), 4)
    cfg.model.decode_head.loss_decode = [
        dict(type='PATLoss'),
        dict(type='DiceLoss', loss_weight=0.5, loss_name='loss_dice')
    ]
    runner = _run(cfg)
    scalars = runner.message_hub.log_scalars
    assert {'train/decode.loss_pat', 'train/decode.loss_dice'} <= set(scalars)
    table = _hook(runner).memory.table
    assert bool((table != 255).any())
    hits = scalars['train/memory_hit'].data[0]
    assert len(hits) == 4 and hits[0] == 0
