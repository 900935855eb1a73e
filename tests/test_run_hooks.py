"""ClassCountsHook and PlainCheckpointHook through MMEngine's runner, the
package's (absent) import side effects, and tools/test.py's checkpoint
check."""
import glob
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader, load_from_local
from mmseg.registry import DATASETS
from PIL import Image

from mmseg_pat.datasets import label_files_key
from mmseg_pat.datasets.class_statistics import cached_class_counts
from mmseg_pat.utils.launch import check_data_roots, set_data_root

from conftest import PROJECT
from model_configs import tiny_config

METRIC = dict(type='LongTailIoUMetric', class_counts='train_set',
              iou_metrics=['mIoU'])


@pytest.fixture
def own_shapes(tmp_path, shapes_root):
    """A copy of the tiny generated dataset that a test may change."""
    root = str(tmp_path / 'shapes')
    shutil.copytree(shapes_root, root)
    return root


def _bincount_labels(root, num_classes=4):
    """Independent count: NumPy over the training label PNGs."""
    counts = np.zeros(num_classes, np.int64)
    files = sorted(glob.glob(osp.join(root, 'ann_dir', 'train', '*.png')))
    assert files
    for path in files:
        label = np.array(Image.open(path))
        counts += np.bincount(label[label != 255], minlength=num_classes)
    return counts


def _counting_config(work_dir, root, **kwargs):
    cfg = tiny_config('segformer', work_dir, root,
                      loss=dict(type='BLVLoss', class_counts='train_set'),
                      tmp_dir=osp.dirname(work_dir), **kwargs)
    cfg.val_evaluator = cfg.test_evaluator = METRIC
    cfg.custom_hooks = [dict(type='ClassCountsHook', nproc=2),
                        dict(type='PlainCheckpointHook')]
    return cfg


def _metric(runner, loop):
    return getattr(runner, f'{loop}_loop').evaluator.metrics[0]


def test_train_set_counts_arrive_during_the_run(tmp_path, own_shapes):
    """No pre-step: Runner.from_cfg(cfg).train() fills in 'train_set' for
    the loss and the metric, caches the counts and records them in the
    checkpoint."""
    runner = Runner.from_cfg(_counting_config(str(tmp_path / 'w'),
                                              own_shapes, max_iters=2))
    runner.train()
    expected = _bincount_labels(own_shapes)
    loss = runner.model.decode_head.loss_decode
    assert np.array_equal(loss.class_counts, expected)
    assert np.array_equal(_metric(runner, 'val').class_counts, expected)
    assert 'val/tail_mIoU' in runner.message_hub.log_scalars
    cached = glob.glob(str(tmp_path / 'w' / 'class_counts_train_*.json'))
    assert len(cached) == 1
    ckpt = torch.load(str(tmp_path / 'w' / 'iter_2.pth'), weights_only=False)
    assert ckpt['meta']['class_counts']['counts'] == expected.tolist()


def test_evaluation_takes_the_counts_from_the_checkpoint(
        tmp_path, own_shapes):
    Runner.from_cfg(_counting_config(str(tmp_path / 'w'), own_shapes,
                                     max_iters=1)).train()
    expected = _bincount_labels(own_shapes)
    shutil.rmtree(osp.join(own_shapes, 'ann_dir', 'train'))  # no train set
    cfg = _counting_config(str(tmp_path / 'w'), own_shapes)
    cfg.load_from = str(tmp_path / 'w' / 'iter_1.pth')
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    assert 'tail_mIoU' in metrics
    assert np.array_equal(_metric(runner, 'test').class_counts, expected)

    # a checkpoint that does not record them: the training set is needed
    ckpt = torch.load(cfg.load_from, weights_only=False)
    del ckpt['meta']['class_counts']
    torch.save(ckpt, str(tmp_path / 'w' / 'old.pth'))
    cfg = _counting_config(str(tmp_path / 'w'), own_shapes)
    cfg.load_from = str(tmp_path / 'w' / 'old.pth')
    cfg.train_dataloader.dataset = dict(type='OxfordPetDataset',
                                        data_root=str(tmp_path / 'nowhere'))
    with pytest.raises(FileNotFoundError, match='give the counts instead'):
        Runner.from_cfg(cfg).test()


def test_counts_are_counted_again_when_a_label_file_changes(
        tmp_path, own_shapes):
    cfg = _counting_config(str(tmp_path / 'w'), own_shapes)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    key = label_files_key(dataset)
    counts, path = cached_class_counts(dataset, str(tmp_path))
    assert np.array_equal(counts, _bincount_labels(own_shapes))
    assert key in osp.basename(path)
    assert cached_class_counts(dataset, str(tmp_path))[1] == path  # cached

    first = sorted(glob.glob(osp.join(own_shapes, 'ann_dir/train/*.png')))[0]
    label = np.array(Image.open(first))
    Image.fromarray(np.full_like(label, 3)).save(first)  # relabelled
    assert label_files_key(dataset) != key
    recounted, new_path = cached_class_counts(dataset, str(tmp_path))
    assert new_path != path
    assert np.array_equal(recounted, _bincount_labels(own_shapes))
    assert not np.array_equal(recounted, counts)


def test_train_set_counts_without_the_hook_say_what_to_add(
        tmp_path, own_shapes):
    cfg = _counting_config(str(tmp_path / 'w'), own_shapes)
    cfg.custom_hooks = []
    with pytest.raises(ValueError, match=r"add dict\(type='ClassCountsHook'"):
        Runner.from_cfg(cfg).train()


def test_heads_that_do_not_match_the_training_set_are_refused(
        tmp_path, own_shapes):
    cfg = _counting_config(str(tmp_path / 'w'), own_shapes)
    cfg.model.decode_head.num_classes = 7
    with pytest.raises(ValueError,
                       match=r'model.decode_head.num_classes is 7 but the '
                       r'training set has 4 classes'):
        Runner.from_cfg(cfg).train()


def test_importing_the_package_changes_nothing_global():
    code = '''
import torch
from mmengine.runner.checkpoint import CheckpointLoader
schemes = dict(CheckpointLoader._schemes)
safe = list(torch.serialization.get_safe_globals())
import mmseg_pat
assert dict(CheckpointLoader._schemes) == schemes, 'checkpoint loaders'
assert list(torch.serialization.get_safe_globals()) == safe, 'safe globals'
print('unchanged')
'''
    done = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'unchanged' in done.stdout


class _Harmful:
    """Unpickling it would create the file ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_a_harmful_pickle_is_refused_and_does_not_run(tmp_path, own_shapes):
    marker = tmp_path / 'harmed'
    evil = tmp_path / 'downloads' / 'model.pth'
    evil.parent.mkdir()
    with open(evil, 'wb') as f:
        pickle.dump({'state_dict': _Harmful(marker)}, f)
    cfg = _counting_config(str(tmp_path / 'w'), own_shapes, max_iters=1)
    cfg.load_from = str(evil)
    with pytest.raises(pickle.UnpicklingError):
        Runner.from_cfg(cfg).train()
    assert not marker.exists()
    assert CheckpointLoader._get_checkpoint_loader('') is load_from_local


def test_checkpoints_are_plain_and_resume_exactly(tmp_path, own_shapes):
    """PlainCheckpointHook: torch's safe loader reads the checkpoint, and
    --resume gives the message hub back its histories as they were."""
    cfg = _counting_config(str(tmp_path / 'w'), own_shapes, max_iters=2)
    cfg.default_hooks.checkpoint.interval = 1
    first = Runner.from_cfg(cfg)
    first.train()
    ckpt = torch.load(str(tmp_path / 'w' / 'iter_1.pth'), weights_only=True)
    assert ckpt['meta']['iter'] == 1
    assert CheckpointLoader._get_checkpoint_loader('') is load_from_local
    losses = first.message_hub.get_scalar('train/decode.loss_blv').data[0]

    cfg.load_from = str(tmp_path / 'w' / 'iter_1.pth')
    cfg.resume = True
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    history = runner.message_hub.get_scalar('train/decode.loss_blv')
    assert type(history).__name__ == 'HistoryBuffer'
    # the first iteration's loss came back from the checkpoint
    assert history.data[0][0] == losses[0] and len(history.data[0]) == 2


def test_tools_test_refuses_a_checkpoint_of_another_model(
        tmp_path, own_shapes):
    cfg = _counting_config(str(tmp_path / 'w'), own_shapes, max_iters=1)
    Runner.from_cfg(cfg).train()
    cfg.model.decode_head.num_classes = 5  # not what was trained
    config = str(tmp_path / 'five.py')
    cfg.dump(config)
    done = subprocess.run(
        [sys.executable, osp.join(PROJECT, 'tools', 'test.py'), config,
         str(tmp_path / 'w' / 'iter_1.pth'), '--work-dir',
         str(tmp_path / 'test')], cwd=PROJECT, capture_output=True,
        text=True, timeout=300)
    assert done.returncode != 0
    assert 'does not fit the model of' in done.stderr
    assert 'size mismatch for decode_head.conv_seg.weight' in done.stderr


def test_data_root_reaches_every_loader_through_wrappers(tmp_path):
    cfg = Config(dict(
        train_dataloader=dict(dataset=dict(
            type='RepeatDataset', times=2,
            dataset=dict(type='CityscapesDataset', data_root='a'))),
        val_dataloader=dict(dataset=dict(
            type='ConcatDataset', datasets=[
                dict(type='CityscapesDataset', data_root='b'),
                dict(type='CityscapesDataset')])),
        test_dataloader=dict(dataset=dict(type='CityscapesDataset',
                                          data_root='c'))))
    set_data_root(cfg, str(tmp_path))
    assert cfg.train_dataloader.dataset.dataset.data_root == str(tmp_path)
    assert [d.data_root for d in cfg.val_dataloader.dataset.datasets] == [
        str(tmp_path)] * 2
    assert cfg.test_dataloader.dataset.data_root == str(tmp_path)
    assert 'data_root' not in cfg.train_dataloader.dataset  # the wrapper
    check_data_roots(cfg)
    cfg.test_dataloader.dataset.data_root = str(tmp_path / 'missing')
    check_data_roots(cfg, ['train_dataloader'])  # only what is used
    with pytest.raises(FileNotFoundError,
                       match=r"test_dataloader: data_root '.*missing' does "
                       'not exist.*--data-root PATH'):
        check_data_roots(cfg)
