"""MMSeg's own model zoo switched to PAT with two config edits.

Each config is read from MMSeg's zoo as installed (``mmseg/.mim/configs``)
and switched to PAT as a user would: ``PATLoss`` as the ``loss_decode`` of
every decode and auxiliary head, and ``PrevPredictionHook`` in
``custom_hooks``; the hook adds the pixel-origin transforms to the training
pipeline itself. The model is then shrunk for a CPU without changing what
it is (tiny crops, a narrow backbone where the config allows, random
initialisation, BN for SyncBN) and trained for two iterations by MMEngine's
``Runner`` on Cityscapes files: generated ones in the official layout, and
the real sample when it is there. Models without a per-pixel decode loss
(MaskFormer, Mask2Former) are refused from the config.
"""
import math
import os.path as osp
from typing import Dict, List, NamedTuple

import mmseg
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import MODELS
from torch import nn

from mmseg_pat.engine.hooks import PrevPredictionHook
from mmseg_pat.engine.prediction_memory import UNSEEN
from mmseg_pat.models.losses import PATLoss
from mmseg_pat.utils import check_pat_applies

from conftest import SAMPLES

ZOO = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs')
CROP = (64, 128)  # H, W
# keep_ratio brings a 2048 x 1024 frame (and a generated 128 x 64 one) to
# 256 x 128, before the zoo's ratio range (0.5, 2.0) and the crop
RESIZE = (256, 128)  # W, H
ITERS = 2
HEAD_KEYS = ('decode_head', 'auxiliary_head')


class ZooModel(NamedTuple):
    """A config of MMSeg's zoo and the model options that shrink it
    (dotted keys under ``model``, as ``--cfg-options`` takes them)."""
    config: str
    shrink: Dict


# ResNet-18 with stage widths 8, 16, 32, 64 for the ResNet-50 configs; their
# dilations, strides and heads stay, only the heads' widths follow
_NARROW_RESNET = {
    'backbone.depth': 18,
    'backbone.base_channels': 8,
    'backbone.stem_channels': 8,
    'auxiliary_head.in_channels': 32,
    'auxiliary_head.channels': 8,
}
ZOO_MODELS = {
    'pspnet':
    ZooModel('pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py', {
        **_NARROW_RESNET,
        'decode_head.in_channels': 64,
        'decode_head.channels': 16,
    }),
    'deeplabv3plus':
    ZooModel(
        'deeplabv3plus/deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py',
        {
            **_NARROW_RESNET,
            'decode_head.in_channels': 64,
            'decode_head.c1_in_channels': 8,
            'decode_head.c1_channels': 8,
            'decode_head.channels': 16,
        }),
    # MiT-B0 (3.7 M parameters), as shipped
    'segformer':
    ZooModel('segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
             {}),
    'upernet':
    ZooModel('upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py', {
        **_NARROW_RESNET,
        'decode_head.in_channels': [8, 16, 32, 64],
        'decode_head.channels': 16,
    }),
    # CascadeEncoderDecoder, decode_head = [FCNHead, OCRHead] on HRNetV2-W18
    # Small, as shipped: an iteration at 64 x 128 takes about 0.4 s
    'ocrnet':
    ZooModel('ocrnet/ocrnet_hr18s_4xb2-40k_cityscapes-512x1024.py', {}),
    # auxiliary_head = 4 FCNHeads, as shipped: about 0.4 s an iteration
    'bisenetv2':
    ZooModel('bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py',
             {}),
    # MMSeg 1.x ships no FCN config with OHEM; the sampler as its OHEM
    # configs (deeplabv3plus_r101-d16-mg124) set it, min_kept scaled to the
    # crop
    'fcn_ohem':
    ZooModel('fcn/fcn_r50-d8_4xb2-40k_cityscapes-512x1024.py', {
        **_NARROW_RESNET,
        'decode_head.in_channels': 64,
        'decode_head.channels': 16,
        'decode_head.sampler': dict(type='OHEMPixelSampler', min_kept=1000),
    }),
}
MASK_CLASSIFICATION = {
    'mask2former/mask2former_r50_8xb2-90k_cityscapes-512x1024.py':
    'Mask2FormerHead',
    'maskformer/maskformer_r50-d32_8xb2-160k_ade20k-512x512.py':
    'MaskFormerHead',
}


def zoo_config(name: str) -> Config:
    """A config of MMSeg's zoo as installed, e.g. ``'fcn/fcn_...py'``."""
    return Config.fromfile(osp.join(ZOO, name))


def head_configs(model: Dict) -> List[Dict]:
    """The decode heads, then the auxiliary heads, of a model config; each
    key holds one head or a list of heads."""
    heads = []
    for key in HEAD_KEYS:
        value = model.get(key)
        heads += value if isinstance(value, list) else [value] * bool(value)
    return heads


def head_modules(model: nn.Module) -> List[nn.Module]:
    """The decode heads, then the auxiliary heads, of a built model."""
    heads = []
    for key in HEAD_KEYS:
        value = getattr(model, key, None)
        heads += list(value) if isinstance(value, nn.ModuleList) else (
            [value] * (value is not None))
    return heads


def switch_to_pat(cfg: Config) -> None:
    """The two edits: ``PATLoss`` on every head, each keeping its
    ``loss_weight``, and the hook."""
    cfg.custom_imports = dict(
        imports=['mmseg_pat'], allow_failed_imports=False)
    for head in head_configs(cfg.model):
        weight = (head.get('loss_decode') or {}).get('loss_weight', 1.0)
        head.loss_decode = dict(type='PATLoss', loss_weight=weight)
    cfg.custom_hooks = [dict(type='PrevPredictionHook')]


def _random_init_bn(node) -> None:
    """BN for SyncBN and no pretrained weights, anywhere under ``node``."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        if 'pretrained' in node:
            node['pretrained'] = None
        if 'Pretrained' in str(node.get('init_cfg')):
            node['init_cfg'] = None
        children = node.values()
    else:
        children = node if isinstance(node, list) else ()
    for child in children:
        _random_init_bn(child)


def shrink(cfg: Config, model_options: Dict, data_root: str,
           work_dir: str) -> None:
    """Two iterations on a CPU: a smaller model of the same kind, tiny
    crops of ``data_root``, no validation and no checkpoint."""
    cfg.merge_from_dict(
        {f'model.{key}': value
         for key, value in model_options.items()})
    for key in cfg:
        _random_init_bn(cfg[key])
    assert '://' not in str(cfg.model.to_dict()), 'nothing may download'
    assert 'SyncBN' not in str(cfg.to_dict())
    cfg.model.data_preprocessor.size = CROP
    loader = cfg.train_dataloader
    loader.update(batch_size=2, num_workers=0, persistent_workers=False)
    loader.dataset.data_root = data_root
    for step in loader.dataset.pipeline:
        if step.type == 'RandomResize':
            step.scale = RESIZE
        elif step.type == 'RandomCrop':
            step.crop_size = CROP
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=ITERS)
    for part in ('val', 'test'):
        for key in ('dataloader', 'cfg', 'evaluator'):
            cfg[f'{part}_{key}'] = None
    # resuming with the memory is tested in test_prev_prediction_hook.py
    cfg.default_hooks.checkpoint = None
    cfg.randomness = dict(seed=0)
    cfg.work_dir = work_dir


class BatchProbe(Hook):
    """Runs after PrevPredictionHook (NORMAL) in each iteration: which
    PATLoss modules got the batch's stored confidences, and which images
    the batch holds."""

    priority = 'LOW'

    def __init__(self):
        self.fed: List[List[bool]] = []
        self.sample_idx = set()

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.fed.append([
            module.exchange is not None
            for module in runner.model.modules()
            if isinstance(module, PATLoss)
        ])
        self.sample_idx.update(sample.sample_idx
                               for sample in data_batch['data_samples'])


def train_and_check(name: str, data_root: str, work_dir: str) -> None:
    """Switch, shrink and train ``ZOO_MODELS[name]``, then check that PAT
    ran on every head."""
    config, model_options = ZOO_MODELS[name]
    cfg = zoo_config(config)
    weights = [head.loss_decode.loss_weight for head in head_configs(
        cfg.model)]
    switch_to_pat(cfg)
    check_pat_applies(cfg)
    shrink(cfg, model_options, data_root, work_dir)
    steps = [step.type for step in cfg.train_dataloader.dataset.pipeline]
    assert 'LoadPixelOrigins' not in steps and steps[-1] == 'PackSegInputs'

    runner = Runner.from_cfg(cfg)
    probe = BatchProbe()
    runner.register_hook(probe)
    runner.train()

    # every head that had a decode loss holds PATLoss, its weight kept
    heads = head_modules(runner.model)
    assert [(type(head.loss_decode), head.loss_decode.loss_weight)
            for head in heads] == [(PATLoss, weight) for weight in weights]
    # the hook found them all: each got the stored confidences, each time
    assert probe.fed == [[True] * len(heads)] * ITERS
    # and put the pixel-origin transforms into the built pipeline, saying so
    load = steps.index('LoadAnnotations') + 1
    expected = (steps[:load] + ['LoadPixelOrigins'] + steps[load:-1] +
                ['PackSegInputsWithOrigins'])
    transforms = runner.train_dataloader.dataset.pipeline.transforms
    assert [type(t).__name__ for t in transforms] == expected
    assert transforms[-1].meta_keys == PackSegInputs().meta_keys
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        assert 'PrevPredictionHook: added to the training pipeline' in (
            f.read())
    # memory_hit and every head's loss logged, finite, each iteration
    scalars = runner.message_hub.log_scalars
    hits = list(scalars['train/memory_hit'].data[0])
    assert len(hits) == ITERS and hits[0] == 0 and 0 <= hits[1] <= 1
    pat_keys = [key for key in scalars if key.endswith('.loss_pat')]
    assert len(pat_keys) == len(heads), pat_keys
    for key in pat_keys + ['train/loss']:
        values = scalars[key].data[0]
        assert len(values) == ITERS and all(map(math.isfinite, values)), (
            key, values)
    # the memory holds confidences for exactly the images trained on
    hook = next(h for h in runner.hooks if isinstance(h, PrevPredictionHook))
    written = (hook.memory.table != UNSEEN).flatten(1).any(1)
    assert set(torch.nonzero(written).flatten().tolist()) == (
        probe.sample_idx)


@pytest.fixture
def one_thread():
    """One torch thread: the models' many small operations gain nothing
    from more, and on a busy CPU each one waits for every thread of the
    pool (5-10x slower seen with 2 threads on 2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('name', list(ZOO_MODELS))
def test_zoo_model_trains_with_pat(name, cityscapes_root, tmp_path,
                                   one_thread):
    train_and_check(name, cityscapes_root, str(tmp_path))


@pytest.mark.real_samples('cityscapes')
def test_zoo_model_trains_with_pat_on_real_cityscapes(tmp_path, one_thread):
    train_and_check('pspnet', osp.join(SAMPLES, 'cityscapes'),
                    str(tmp_path))


@pytest.mark.parametrize('config', [model.config
                                    for model in ZOO_MODELS.values()])
def test_zoo_configs_accepted(config):
    cfg = zoo_config(config)
    switch_to_pat(cfg)
    check_pat_applies(cfg)


@pytest.mark.parametrize('config,head', list(MASK_CLASSIFICATION.items()))
@pytest.mark.parametrize('edit', ['loss and hook', 'loss', 'hook'])
def test_mask_classification_refused(config, head, edit):
    cfg = zoo_config(config)
    check_pat_applies(cfg)  # a config without PAT is left alone
    switch_to_pat(cfg)
    if edit == 'loss':
        cfg.custom_hooks = []
    elif edit == 'hook':
        del cfg.model.decode_head.loss_decode
    with pytest.raises(ValueError) as error:
        check_pat_applies(cfg)
    message = str(error.value)
    assert f'model.decode_head, a {head}' in message
    assert 'not a per-pixel decode loss' in message
    assert 'PAT does not apply' in message


def test_pat_without_decode_head_refused():
    cfg = dict(
        model=dict(type='EncoderDecoder'),
        custom_hooks=[dict(type='PrevPredictionHook')])
    with pytest.raises(ValueError, match='has no decode_head'):
        check_pat_applies(cfg)


@pytest.mark.parametrize('head,refused', [
    ('mmseg.FCNHead', False),
    (MODELS.get('FCNHead'), False),
    (MODELS.get('Mask2FormerHead'), True),
    ('NoSuchHead', False),  # left to the build, which names it
])
def test_head_type_as_scoped_name_or_class(head, refused):
    cfg = dict(model=dict(decode_head=dict(
        type=head, loss_decode=dict(type='PATLoss'))))
    if refused:
        with pytest.raises(ValueError, match='a Mask2FormerHead'):
            check_pat_applies(cfg)
    else:
        check_pat_applies(cfg)
