"""Tiny versions of the MMSeg models the project configures, for tests.

Each config inherits MMSeg's real model base; only depths and widths are cut
so that a training iteration takes a fraction of a second on a CPU.
"""
import os.path as osp
from typing import Optional

from mmengine.config import Config

from mmseg_pat import load_config

from conftest import PROJECT, TINY_SHAPES

MODEL_BASES = {
    'segformer': 'mmseg::_base_/models/segformer_mit-b0.py',
    'deeplabv3plus': 'mmseg::_base_/models/deeplabv3plus_r50-d8.py',
    'upernet': 'mmseg::_base_/models/upernet_r50.py',
}

_BN = dict(type='BN', requires_grad=True)
_TINY_RESNET = dict(
    depth=18, base_channels=8, stem_channels=8, norm_cfg=_BN, init_cfg=None)
_TINY_MODELS = {
    'segformer':
    dict(
        backbone=dict(embed_dims=8, num_layers=[1, 1, 1, 1], init_cfg=None),
        decode_head=dict(in_channels=[8, 16, 40, 64], channels=16)),
    'deeplabv3plus':
    dict(
        pretrained=None,
        backbone=_TINY_RESNET,
        decode_head=dict(
            in_channels=64, c1_in_channels=8, c1_channels=8, channels=16,
            dilations=(1, 2, 3, 4)),
        auxiliary_head=dict(in_channels=32, channels=8, norm_cfg=_BN)),
    'upernet':
    dict(
        pretrained=None,
        backbone=_TINY_RESNET,
        decode_head=dict(in_channels=[8, 16, 32, 64], channels=16),
        auxiliary_head=dict(in_channels=32, channels=8, norm_cfg=_BN)),
}


def tiny_config(model: str,
                work_dir: str,
                data_root: str,
                loss: Optional[dict] = None,
                max_iters: int = 3,
                tmp_dir: Optional[str] = None,
                memory_grid: Optional[tuple] = None) -> Config:
    """A runnable config: tiny ``model`` on the tiny generated shapes.

    With ``memory_grid``, the train pipeline carries pixel origins and
    ``PrevPredictionHook`` runs with that grid.
    """
    tmp_dir = tmp_dir or work_dir
    text = f"""
_base_ = [
    {MODEL_BASES[model]!r},
    {osp.join(PROJECT, 'configs/_base_/datasets/long_tail_shapes.py')!r},
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmseg_pat'], allow_failed_imports=False)
"""
    path = osp.join(tmp_dir, f'{model}_tiny.py')
    with open(path, 'w') as f:
        f.write(text)
    cfg = load_config(path)
    num_classes = TINY_SHAPES['num_shape_classes'] + 1
    size = tuple(TINY_SHAPES['image_size'])
    loss = loss or dict(type='PATLoss')
    model_cfg = Config(_TINY_MODELS[model]).to_dict()
    model_cfg['data_preprocessor'] = dict(size=size)
    model_cfg['decode_head'].update(num_classes=num_classes, norm_cfg=_BN)
    if 'auxiliary_head' in model_cfg:
        model_cfg['auxiliary_head'].update(num_classes=num_classes)
    cfg.merge_from_dict(dict(model=model_cfg))
    # Replaced whole: MMSeg's CE options are not PATLoss arguments.
    cfg.model.decode_head.loss_decode = loss
    if 'auxiliary_head' in cfg.model:
        cfg.model.auxiliary_head.loss_decode = dict(loss, loss_weight=0.4)
    cfg.data_preprocessor = dict(cfg.data_preprocessor, size=size)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
        cfg[loader].dataset.generation = dict(TINY_SHAPES)
    cfg.train_dataloader.batch_size = 2
    for step in cfg.train_dataloader.dataset.pipeline:
        if step['type'] == 'RandomResize':
            step['scale'] = size
        if step['type'] == 'RandomCrop':
            step['crop_size'] = size
    if memory_grid is not None:
        add_prediction_memory(cfg, memory_grid)
    cfg.optim_wrapper = dict(
        type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
    cfg.param_scheduler = []
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
    cfg.val_cfg = dict(type='ValLoop')
    cfg.test_cfg = dict(type='TestLoop')
    cfg.default_hooks = dict(
        timer=dict(type='IterTimerHook'),
        logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
        param_scheduler=dict(type='ParamSchedulerHook'),
        checkpoint=dict(
            type='CheckpointHook', by_epoch=False, interval=max_iters),
        sampler_seed=dict(type='DistSamplerSeedHook'))
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
    cfg.randomness = dict(seed=0)
    cfg.work_dir = work_dir
    return cfg


def add_prediction_memory(cfg: Config, grid: tuple) -> None:
    """Switch ``PrevPredictionHook`` on, as a user's config does: the train
    pipeline gets the pixel origins unless it carries them already."""
    pipeline = cfg.train_dataloader.dataset.pipeline
    types = [t['type'] for t in pipeline]
    if 'LoadPixelOrigins' not in types:
        pipeline.insert(types.index('LoadAnnotations') + 1,
                        dict(type='LoadPixelOrigins'))
    pipeline[-1] = dict(type='PackSegInputsWithOrigins')
    cfg.custom_hooks = [dict(type='PrevPredictionHook', grid=grid)]
