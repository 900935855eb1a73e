"""MMSeg's model zoo as installed, switched to PAT with the README's two
edits, and made small enough for a CPU without changing what each model is.

Shared by the in-process zoo tests (``test_mmseg_zoo.py``) and the real
runs through MMSeg's own ``tools/train.py`` (``test_real_runs.py``).
"""
import os.path as osp
from typing import Dict, List, NamedTuple

import mmseg
from mmengine.config import Config
from torch import nn

ZOO = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs')
CROP = (64, 128)  # H, W
# keep_ratio brings a 2048 x 1024 frame (and a generated 128 x 64 one) to
# 256 x 128, before the zoo's ratio range (0.5, 2.0) and the crop
RESIZE = (256, 128)  # W, H
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
    # CascadeEncoderDecoder, decode_head = [FPNHead, PointHead]: the point
    # head's loss sees sampled points (N, C, P)
    'point_rend':
    ZooModel('point_rend/pointrend_r50_4xb2-80k_cityscapes-512x1024.py', {
        **{k: v for k, v in _NARROW_RESNET.items()
           if not k.startswith('auxiliary_head')},
        'neck.in_channels': [8, 16, 32, 64],
        'neck.out_channels': 16,
        'decode_head.0.in_channels': [16] * 4,
        'decode_head.0.channels': 16,
        'decode_head.1.in_channels': [16],
        'decode_head.1.channels': 16,
        'train_cfg.num_points': 256,
    }),
    # DAHead calls its loss three times (fused map first, then each branch)
    'danet':
    ZooModel('danet/danet_r50-d8_4xb2-40k_cityscapes-512x1024.py', {
        **_NARROW_RESNET,
        'decode_head.in_channels': 64,
        'decode_head.channels': 16,
        'decode_head.pam_channels': 8,
    }),
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
    ``loss_weight`` (that of the first loss of a list), and the hook."""
    cfg.custom_imports = dict(
        imports=['mmseg_pat'], allow_failed_imports=False)
    for head in head_configs(cfg.model):
        losses = head.get('loss_decode') or {}
        if isinstance(losses, list):
            losses = losses[0]
        weight = losses.get('loss_weight', 1.0)
        head.loss_decode = dict(type='PATLoss', loss_weight=weight)
    cfg.custom_hooks = [dict(type='PrevPredictionHook')]


def random_init_bn(node) -> None:
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
        random_init_bn(child)


def shrink_model(cfg: Config, model_options: Dict) -> None:
    """A smaller model of the same kind: ``model_options`` (dotted keys
    under ``model``), random initialisation, BN for SyncBN, and nothing
    that downloads."""
    cfg.merge_from_dict(
        {f'model.{key}': value
         for key, value in model_options.items()})
    for key in cfg:
        random_init_bn(cfg[key])
    assert '://' not in str(cfg.model.to_dict()), 'nothing may download'
    assert 'SyncBN' not in str(cfg.to_dict())
    cfg.model.data_preprocessor.size = CROP


def small_crops(cfg: Config, data_root: str) -> None:
    """The training set on ``data_root``, resized and cropped small."""
    dataset = cfg.train_dataloader.dataset
    dataset.data_root = data_root
    for step in dataset.pipeline:
        if step.type == 'RandomResize':
            step.scale = RESIZE
        elif step.type == 'RandomCrop':
            step.crop_size = CROP
