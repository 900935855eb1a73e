"""Every ready config builds offline, trains two iterations and validates on
the real samples in ../shared/data, with the intended loss on each head."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mmseg_pat.datasets import resolve_class_counts
from mmseg_pat.utils.launch import check_num_classes_match, prepare_config

from conftest import PROJECT, SHARED_DATA

CONFIGS = sorted(
    osp.relpath(p, PROJECT)
    for p in glob.glob(osp.join(PROJECT, 'configs', '*', '*.py'))
    if osp.basename(osp.dirname(p)) in ('pat', 'ce', 'blv'))
EXPECTED_LOSS = dict(pat='PATLoss', ce='CrossEntropyLoss', blv='BLVLoss')
DATA = {
    'cityscapes': dict(data_root=osp.join(SHARED_DATA, 'cityscapes')),
    'oxfordpet': dict(data_root=osp.join(SHARED_DATA, 'oxford_pet')),
    # the NYU sample holds only test frames: train on them too
    'nyu': dict(
        data_root=osp.join(SHARED_DATA, 'nyu'),
        data_prefix=dict(img_path='image/test', seg_map_path='label/test')),
}
CROP = (64, 64)


def test_all_nine_pairs_for_each_loss():
    names = {osp.basename(c) for c in CONFIGS}
    assert len(names) == 9 and len(CONFIGS) == 27


def _shrink_pipeline(pipeline):
    for step in pipeline:
        if step['type'] in ('RandomResize', 'Resize'):
            step['scale'] = (96, 96)
        if step['type'] == 'RandomCrop':
            step['crop_size'] = CROP


def offline_small_config(path, work_dir):
    cfg = Config.fromfile(osp.join(PROJECT, path))
    dataset_name = osp.splitext(osp.basename(path))[0].split('_')[-1]
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = None  # no download
    cfg.model.data_preprocessor.size = CROP
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(num_workers=0, persistent_workers=False)
        cfg[loader].dataset.update(DATA[dataset_name])
        _shrink_pipeline(cfg[loader].dataset.pipeline)
    cfg.train_dataloader.batch_size = 2
    cfg.val_dataloader.dataset.indices = 1
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=2)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 1000
    cfg.work_dir = work_dir
    return cfg


@pytest.mark.parametrize('path', CONFIGS)
def test_config_trains_and_validates(path, tmp_path, tmp_path_factory):
    cfg = offline_small_config(path, str(tmp_path))
    check_num_classes_match(cfg)
    # the class counts of each sample are computed once for all configs
    resolve_class_counts(cfg, str(tmp_path_factory.getbasetemp()))
    runner = Runner.from_cfg(cfg)
    loss_type = EXPECTED_LOSS[osp.basename(osp.dirname(path))]
    heads = [runner.model.decode_head]
    if getattr(runner.model, 'auxiliary_head', None) is not None:
        heads.append(runner.model.auxiliary_head)
    for head in heads:
        assert type(head.loss_decode).__name__ == loss_type
    hooks = [type(h).__name__ for h in runner.hooks]
    assert ('PrevPredictionHook' in hooks) == (loss_type == 'PATLoss')

    runner.train()
    hub = runner.message_hub
    assert hub.get_info('iter') == 1
    for key in ('val/mIoU', 'val/aAcc', 'val/head_mIoU', 'val/tail_mIoU'):
        assert key in hub.log_scalars, key


def test_class_count_mismatch_is_refused(tmp_path):
    cfg = offline_small_config('configs/pat/upernet_cityscapes.py',
                               str(tmp_path))
    cfg.model.auxiliary_head.num_classes = 18
    with pytest.raises(ValueError,
                       match=r'model.auxiliary_head.num_classes is 18 but '
                       r'the training set \(CityscapesDataset\) has 19'):
        prepare_config(cfg, 'x.py', 'none', None)


def test_missing_data_root_is_refused(tmp_path):
    cfg = offline_small_config('configs/ce/segformer_nyu.py', str(tmp_path))
    cfg.val_dataloader.dataset.data_root = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError,
                       match=r"val_dataloader.dataset.data_root '.*nowhere' "
                       r'does not exist'):
        prepare_config(cfg, 'x.py', 'none', None)
