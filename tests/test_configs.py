"""Every ready config builds offline, trains two iterations and validates on
the generated data roots, with the intended loss on each head; the PAT
SegFormer configs also train on the real samples."""
import glob
import os.path as osp

import pytest
from mmengine.runner import Runner

from mmseg_pat import load_config
from mmseg_pat.utils.launch import prepare_config

from conftest import PROJECT, SAMPLES

CONFIGS = sorted(
    osp.relpath(p, PROJECT)
    for p in glob.glob(osp.join(PROJECT, 'configs', '*', '*.py'))
    if osp.basename(osp.dirname(p)) in ('pat', 'ce', 'blv'))
EXPECTED_LOSS = dict(pat='PATLoss', ce='CrossEntropyLoss', blv='BLVLoss')
# Fixture of each config's generated data root, by the config's suffix.
GENERATED = dict(
    cityscapes='cityscapes_root', oxfordpet='oxford_pet_root', nyu='nyu_root')
REAL = {
    'cityscapes': dict(data_root=osp.join(SAMPLES, 'cityscapes')),
    'oxfordpet': dict(data_root=osp.join(SAMPLES, 'oxford_pet')),
    # the NYU sample holds only test frames: train on them too
    'nyu': dict(
        data_root=osp.join(SAMPLES, 'nyu'),
        data_prefix=dict(img_path='image/test', seg_map_path='label/test')),
}
CROP = (64, 64)


def _dataset_name(path):
    return osp.splitext(osp.basename(path))[0].split('_')[-1]


def test_all_nine_pairs_for_each_loss():
    names = {osp.basename(c) for c in CONFIGS}
    assert len(names) == 9 and len(CONFIGS) == 27
    assert {_dataset_name(c) for c in CONFIGS} == set(GENERATED)


def _shrink_pipeline(pipeline):
    for step in pipeline:
        if step['type'] in ('RandomResize', 'Resize'):
            step['scale'] = (96, 96)
        if step['type'] == 'RandomCrop':
            step['crop_size'] = CROP


def offline_small_config(path, work_dir, data, counts_dir=None):
    """The config at ``path``, offline, on small crops, for 2 iterations,
    with ``data`` (``data_root`` and the like) in every loader, and the
    class counts cached in ``counts_dir`` (default: the work dir)."""
    cfg = load_config(osp.join(PROJECT, path))
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = None  # no download
    cfg.model.data_preprocessor.size = CROP
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(num_workers=0, persistent_workers=False)
        cfg[loader].dataset.update(data)
        _shrink_pipeline(cfg[loader].dataset.pipeline)
    cfg.train_dataloader.batch_size = 2
    cfg.val_dataloader.dataset.indices = 1
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=2)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 1000
    for hook in cfg.get('custom_hooks') or []:
        if hook['type'] == 'ClassCountsHook':
            hook.update(cache_dir=counts_dir, nproc=1)
    cfg.work_dir = work_dir
    return cfg


def _generated_config(path, work_dir, request):
    root = request.getfixturevalue(GENERATED[_dataset_name(path)])
    # the class counts of each data root are counted once for all configs
    counts_dir = str(request.getfixturevalue('tmp_path_factory').getbasetemp())
    return offline_small_config(path, work_dir, dict(data_root=root),
                                counts_dir)


def _train_and_check(path, cfg):
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


@pytest.mark.parametrize('path', CONFIGS)
def test_config_trains_and_validates(path, tmp_path, request):
    _train_and_check(path, _generated_config(path, str(tmp_path), request))


@pytest.mark.parametrize('path', [
    pytest.param(
        f'configs/pat/segformer_{name}.py',
        marks=pytest.mark.real_samples(sample))
    for name, sample in (('cityscapes', 'cityscapes'),
                         ('oxfordpet', 'oxford_pet'), ('nyu', 'nyu'))
])
def test_config_trains_on_the_real_sample(path, tmp_path):
    _train_and_check(
        path,
        offline_small_config(path, str(tmp_path), REAL[_dataset_name(path)]))


def test_class_count_mismatch_is_refused(tmp_path, request):
    cfg = _generated_config('configs/pat/segformer_cityscapes.py',
                            str(tmp_path), request)
    cfg.model.decode_head.num_classes = 18
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError,
                       match=r'model.decode_head.num_classes is 18 but the '
                       r'training set has 19 classes'):
        runner.train()


def test_missing_data_root_is_refused(tmp_path, request):
    cfg = _generated_config('configs/ce/segformer_nyu.py', str(tmp_path),
                            request)
    cfg.val_dataloader.dataset.data_root = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError,
                       match=r"val_dataloader: data_root '.*nowhere' does "
                       r'not exist'):
        prepare_config(cfg, 'x.py', 'none', None)


def test_rare_class_sampling_config_trains(tmp_path, request):
    """configs/rcs/: PAT with RareClassSampler, built by the runner, trains
    and validates; its per-image table lands in the run's work dir."""
    path = 'configs/rcs/segformer_cityscapes.py'
    cfg = _generated_config(path, str(tmp_path), request)
    cfg.train_dataloader.sampler.min_pixels = 1  # tiny generated labels
    runner = Runner.from_cfg(cfg)
    assert type(runner.train_dataloader.sampler).__name__ == (
        'RareClassSampler')
    assert type(runner.model.decode_head.loss_decode).__name__ == 'PATLoss'
    runner.train()
    assert 'val/tail_mIoU' in runner.message_hub.log_scalars
    assert glob.glob(str(tmp_path / 'class_counts_per_image_*.npz'))
