"""PATLoss inside real MMSeg heads and MMEngine's runner (tiny models)."""
import math
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from model_configs import tiny_config


def _samples(labels):
    samples = []
    for label in labels:
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=label[None])
        samples.append(s)
    return samples


@pytest.mark.parametrize('thresh', [None, 0.7])
def test_ohem_sampler_with_pat_loss(thresh):
    head = MODELS.build(
        dict(
            type='FCNHead',
            in_channels=4,
            channels=4,
            num_convs=1,
            num_classes=3,
            sampler=dict(type='OHEMPixelSampler', thresh=thresh, min_kept=20),
            loss_decode=dict(type='PATLoss')))
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    labels = torch.randint(0, 3, (2, 16, 16))
    labels[0, :4] = 255
    losses = head.loss_by_feat(logits, _samples(labels))
    assert torch.isfinite(losses['loss_pat'])
    losses['loss_pat'].backward()
    # OHEM keeps only some pixels: the others get no gradient at all.
    zero = (logits.grad.abs().sum(1) == 0)
    assert zero.any() and not zero.all()


@pytest.mark.parametrize('model', ['segformer', 'deeplabv3plus', 'upernet'])
def test_tiny_model_trains_with_pat_loss(model, tmp_path, shapes_root):
    cfg = tiny_config(model, str(tmp_path), shapes_root, max_iters=3)
    runner = Runner.from_cfg(cfg)
    heads = [runner.model.decode_head]
    if getattr(runner.model, 'auxiliary_head', None) is not None:
        heads.append(runner.model.auxiliary_head)
    for head in heads:
        assert type(head.loss_decode).__name__ == 'PATLoss'
    runner.train()
    hub = runner.message_hub
    assert hub.get_info('iter') == 2  # 0-based index of the last iteration
    values = [hub.get_scalar('train/decode.loss_pat').current()]
    if len(heads) > 1:
        values.append(hub.get_scalar('train/aux.loss_pat').current())
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert osp.isfile(osp.join(str(tmp_path), 'iter_3.pth'))


def test_resume_and_load_from_on_recent_torch(tmp_path, shapes_root):
    """mmengine 0.10.7 + torch >= 2.6: with PlainCheckpointHook, a
    checkpoint written by the runner is loaded again by --resume and by
    load_from (from another run's folder) through torch's safe loader."""
    first = tiny_config('segformer', str(tmp_path / 'a'), shapes_root,
                        max_iters=2, tmp_dir=str(tmp_path))
    first.default_hooks.checkpoint.interval = 1
    first.custom_hooks = [dict(type='PlainCheckpointHook')]
    Runner.from_cfg(first).train()

    resumed = tiny_config('segformer', str(tmp_path / 'a'), shapes_root,
                          max_iters=4, tmp_dir=str(tmp_path))
    resumed.custom_hooks = [dict(type='PlainCheckpointHook')]
    resumed.resume = True
    runner = Runner.from_cfg(resumed)
    runner.train()
    # the run went on from iteration 2, not from scratch
    assert runner.message_hub.get_info('iter') == 3
    hist = runner.message_hub.get_scalar('train/decode.loss_pat')
    assert len(hist.data[0]) == 4  # two logged before the stop, two after
    assert osp.isfile(str(tmp_path / 'a' / 'iter_4.pth'))

    loaded = tiny_config('segformer', str(tmp_path / 'b'), shapes_root,
                         max_iters=1, tmp_dir=str(tmp_path))
    loaded.load_from = str(tmp_path / 'a' / 'iter_4.pth')
    loaded.custom_hooks = [
        dict(type='PlainCheckpointHook')
    ]
    runner = Runner.from_cfg(loaded)
    runner.call_hook('before_run')
    runner.load_or_resume()
    ckpt = torch.load(str(tmp_path / 'a' / 'iter_4.pth'), weights_only=False)
    for name, value in runner.model.state_dict().items():
        assert torch.equal(value, ckpt['state_dict'][name]), name
