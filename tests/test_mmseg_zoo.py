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
from typing import Dict, List

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import MODELS

from mmseg_pat.engine.hooks import PrevPredictionHook
from mmseg_pat.engine.hooks.prev_prediction_hook import find_pat_losses
from mmseg_pat.engine.prediction_memory import UNSEEN
from mmseg_pat.models.losses import ConfidenceExchange, PATLoss
from mmseg_pat.utils import check_pat_applies

from conftest import SAMPLES
from zoo_models import (MASK_CLASSIFICATION, ZOO_MODELS, head_configs,
                        head_modules, shrink_model, small_crops, switch_to_pat,
                        zoo_config)

ITERS = 2
#: Heads that log more than one loss: DANet's head logs its fused map's and
#: each branch's (pam_cam, pam, cam).
EXTRA_LOSS_KEYS = {'danet': 2}


def shrink(cfg: Config, model_options: Dict, data_root: str,
           work_dir: str) -> None:
    """Two iterations on a CPU: a smaller model of the same kind, tiny
    crops of ``data_root``, no validation and no checkpoint."""
    shrink_model(cfg, model_options)
    small_crops(cfg, data_root)
    cfg.train_dataloader.update(batch_size=2, num_workers=0,
                                persistent_workers=False)
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
    # PointRend's point head logs 'decode_1.pointloss_pat'
    pat_keys = [key for key in scalars if key.endswith('loss_pat')]
    assert len(pat_keys) == len(heads) + EXTRA_LOSS_KEYS.get(name, 0), (
        pat_keys)
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


#: Zoo configs whose heads PAT cannot serve as the two edits leave them:
#: config -> what the refusal names.
REFUSED_HEADS = {
    'stdc/stdc1_4xb12-80k_cityscapes-512x1024.py':
    'model.auxiliary_head[2], a STDCHead',
    'pidnet/pidnet-s_2xb6-120k_1024x1024-cityscapes.py':
    'model.decode_head, a PIDHead',
    'san/san-vit-b16_voc12aug-640x640.py':
    'model.decode_head, a SideAdapterCLIPHead',
    'vpd/vpd_sd_4xb8-25k_nyu-480x480.py': 'model.decode_head, a VPDDepthHead',
    'ddrnet/ddrnet_23-slim_in1k-pre_2xb6-120k_cityscapes-1024x1024.py':
    'as a list of 2',
    'knet/knet-s3_r50-d8_fcn_8xb2-adamw-80k_ade20k-512x512.py':
    'model.decode_head.kernel_generate_head',
}
#: Families the tests do not train, whose heads learn the classes per pixel
#: (Segmenter's mask transformer, ISA, DNL, SETR's up and MLA heads, EncNet,
#: DANet, ...): the check lets them through.
ACCEPTED = [
    'segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py',
    'isanet/isanet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'dnlnet/dnl_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'setr/setr_vit-l_naive_8xb1-80k_cityscapes-768x768.py',
    'setr/setr_vit-l_pup_8xb1-80k_cityscapes-768x768.py',
    'setr/setr_vit-l-mla_8xb1-160k_ade20k-512x512.py',
    'encnet/encnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'emanet/emanet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
    'sem_fpn/fpn_r50_4xb2-80k_cityscapes-512x1024.py',
    'dpt/dpt_vit-b16_8xb2-160k_ade20k-512x512.py',
    'mobilenet_v3/mobilenet-v3-d8-s_lraspp_4xb4-320k_cityscapes-512x1024.py',
]


@pytest.mark.parametrize('config,named', list(REFUSED_HEADS.items()))
def test_heads_pat_cannot_serve_are_refused_up_front(config, named):
    cfg = zoo_config(config)
    check_pat_applies(cfg)
    switch_to_pat(cfg)
    with pytest.raises(ValueError) as error:
        check_pat_applies(cfg)
    assert named in str(error.value)


@pytest.mark.parametrize('config', ACCEPTED)
def test_per_pixel_heads_of_other_families_accepted(config):
    cfg = zoo_config(config)
    switch_to_pat(cfg)
    check_pat_applies(cfg)


def test_heads_refused_as_edited_are_accepted_as_the_message_says():
    ddrnet, knet = [zoo_config(c) for c in REFUSED_HEADS
                    if c.startswith(('ddrnet', 'knet'))]
    for cfg in (ddrnet, knet):
        switch_to_pat(cfg)
    ddrnet.model.decode_head.loss_decode = [dict(type='PATLoss')] * 2
    check_pat_applies(ddrnet)
    del knet.model.decode_head.loss_decode
    knet.model.decode_head.kernel_generate_head.loss_decode = dict(
        type='PATLoss')
    check_pat_applies(knet)


@pytest.mark.parametrize('name,head,keep', [
    ('ocrnet', 'decode_head.1', 'last'),  # the cascade's final head
    ('point_rend', 'decode_head.0', 'last'),  # not the point head
    ('danet', 'decode_head', 'first'),  # pam_cam, then pam, then cam
    ('pspnet', 'decode_head', 'last'),
])
def test_memory_written_from_the_head_that_predicts(name, head, keep):
    config, model_options = ZOO_MODELS[name]
    cfg = zoo_config(config)
    switch_to_pat(cfg)
    shrink_model(cfg, model_options)
    model = MODELS.build(cfg.model)
    _, writer, kept = find_pat_losses(model)
    assert writer is model.get_submodule(f'{head}.loss_decode')
    assert kept == keep


def test_exchange_keeps_the_call_that_predicts():
    writer, other = PATLoss(), PATLoss()
    label = torch.zeros(1, 2, 2, dtype=torch.long)
    first, second = torch.full((1, 2, 2), 0.25), torch.full((1, 2, 2), 0.5)
    for keep, expected in (('first', first), ('last', second)):
        exchange = ConfidenceExchange([], writer, keep)
        exchange.record(other, torch.ones(1, 2, 2), label)
        exchange.record(writer, first, label)
        exchange.record(writer, torch.ones(1, 5), label[:, 0])  # points
        exchange.record(writer, second, label)
        assert exchange.current is expected
