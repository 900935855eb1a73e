"""PrevPredictionHook, PredictionMemory and the pixel-origin transforms."""
import os.path as osp
from unittest.mock import Mock

import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.registry import HOOKS, MODELS, TRANSFORMS
from mmseg.structures import SegDataSample
from PIL import Image

from mmseg_pat.engine import MemoryMismatchError, PredictionMemory

from model_configs import tiny_config

H, W = 40, 60


@pytest.fixture
def image_files(tmp_path):
    """An image and a label whose value identifies the pixel's position."""
    rows, cols = np.mgrid[0:H, 0:W]
    label = ((rows * 7 + cols * 3) % 250).astype(np.uint8)
    img = np.stack([label, 255 - label, label // 2], -1).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / 'img.png')
    Image.fromarray(label).save(tmp_path / 'label.png')
    return str(tmp_path / 'img.png'), str(tmp_path / 'label.png'), label


def _augment(files, seed, flip_prob=1.0):
    np.random.seed(seed)
    pipeline = Compose([
        TRANSFORMS.build(t) for t in [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='LoadPixelOrigins'),
            dict(type='RandomResize', scale=(90, 60), ratio_range=(1.0, 1.6),
                 keep_ratio=True),
            dict(type='RandomCrop', crop_size=(48, 72)),
            dict(type='RandomFlip', prob=flip_prob, direction='horizontal'),
            dict(type='PackSegInputsWithOrigins'),
        ]
    ])
    return pipeline(
        dict(img_path=files[0], seg_map_path=files[1], reduce_zero_label=False,
             seg_fields=[], sample_idx=3))['data_samples']


def test_origins_follow_resize_crop_and_flip(image_files):
    label = image_files[2]
    sample = _augment(image_files, seed=0)
    assert sample.flip and sample.sample_idx == 3
    assert sample.origin_shape == (H, W)
    aug = sample.gt_sem_seg.data[0].numpy()
    row, col = sample.pixel_origin.data.numpy()
    # every augmented label pixel is the original pixel its origin names
    assert np.array_equal(aug, label[row, col])
    # the crop really moved and the flip really happened
    assert row.min() > 0 or col.min() > 0
    assert col[0, 0] > col[0, -1]


def test_memory_value_lands_in_its_cell_and_reads_back_aligned(
        image_files, tmp_path):
    """Pixel-resolution grid: a value written from one augmented crop reads
    back, at the next visit (another crop and no flip), exactly where the
    same original pixels are."""
    label = image_files[2]
    meta = PredictionMemory.make_meta(5, (H, W), 250, 'test')
    memory = PredictionMemory.create(str(tmp_path / 'memory'), meta)
    first = _augment(image_files, seed=0, flip_prob=1.0)
    second = _augment(image_files, seed=5, flip_prob=0.0)

    value = first.gt_sem_seg.data[0].float() / 254  # encodes the position
    memory.write(3, first.pixel_origin.data, first.origin_shape, value)
    grid = np.asarray(memory.array[3])
    row, col = first.pixel_origin.data.numpy()
    assert np.array_equal(grid[row, col], label[row, col])
    assert np.count_nonzero(grid != 255) == len(set(zip(row.ravel(),
                                                        col.ravel())))
    assert np.all(np.asarray(memory.array[[0, 1, 2, 4]]) == 255)

    read = memory.read(3, second.pixel_origin.data, second.origin_shape)
    seen = read >= 0
    assert seen.float().mean() > 0.3  # the two crops overlap
    expected = second.gt_sem_seg.data[0].float() / 254
    torch.testing.assert_close(read[seen], expected[seen], atol=1e-6, rtol=0)


def test_coarse_grid_stores_cell_means(tmp_path):
    meta = PredictionMemory.make_meta(1, (2, 2), 3, 'test')
    memory = PredictionMemory.create(str(tmp_path), meta)
    rows, cols = np.mgrid[0:4, 0:4]
    origin = torch.from_numpy(np.stack([rows, cols]))
    confidence = torch.tensor([[0.0, 1.0, 0.5, 0.5], [0.5, 0.5, 0.5, -1.0],
                               [0.2, 0.2, 0.9, 0.9], [0.2, 0.2, -1.0, -1.0]])
    assert memory.write(0, origin, (4, 4), confidence) == 4
    expected = np.round(np.array([[0.5, 0.5], [0.2, 0.9]]) * 254)
    assert np.array_equal(np.asarray(memory.array[0]), expected)


def test_mismatched_or_corrupt_memory_is_refused(tmp_path):
    meta = PredictionMemory.make_meta(4, (8, 8), 3, 'abc')
    PredictionMemory.create(str(tmp_path), meta)
    other = dict(meta, grid=[16, 8], num_images=5)
    with pytest.raises(MemoryMismatchError,
                       match=r'number of training images: 4 stored, 5 now.*'
                       r'grid \(rows, cols\): \[8, 8\] stored, \[16, 8\]'):
        PredictionMemory.open(str(tmp_path), other)
    with open(tmp_path / 'memory.u8', 'ab') as f:
        f.write(b'x')
    with pytest.raises(MemoryMismatchError, match='truncated or corrupt'):
        PredictionMemory.open(str(tmp_path), meta)


def _sample(idx, height, width, label):
    s = SegDataSample()
    s.gt_sem_seg = PixelData(data=label[None])
    rows, cols = torch.meshgrid(
        torch.arange(height), torch.arange(width), indexing='ij')
    s.pixel_origin = PixelData(data=torch.stack([rows, cols]).int())
    s.set_metainfo(dict(sample_idx=idx, origin_shape=(height, width)))
    return s


def test_hook_alone_with_mock_runner(tmp_path, shapes_root):
    """The hook hands stored maps to every PATLoss and writes the decode
    head's confidences back, padding handled at bottom / right."""
    cfg = tiny_config('upernet', str(tmp_path), shapes_root,
                      memory_grid=(4, 4))
    model = MODELS.build(cfg.model)
    dataset = Mock(pipeline=Mock(transforms=[
        TRANSFORMS.build(dict(type='LoadPixelOrigins')),
        TRANSFORMS.build(dict(type='PackSegInputsWithOrigins'))
    ]), metainfo=dict(classes=('a', 'b', 'c', 'd')))
    dataset.__len__ = Mock(return_value=2)
    dataset.get_data_info = lambda i: dict(seg_map_path=f'{i}.png')
    del dataset.dataset
    runner = Mock(model=model, work_dir=str(tmp_path), iter=0, hooks=[])
    runner.train_dataloader.dataset = dataset
    hook = HOOKS.build(dict(type='PrevPredictionHook', grid=(4, 4)))
    hook.before_run(runner)
    hook.before_train(runner)
    decode_loss = model.decode_head.loss_decode
    aux_loss = model.auxiliary_head.loss_decode

    samples = [
        _sample(0, 8, 8, torch.zeros(8, 8, dtype=torch.long)),
        _sample(1, 6, 8, torch.ones(6, 8, dtype=torch.long))
    ]
    batch = dict(data_samples=samples)
    hook.before_train_iter(runner, 0, batch)
    for loss in (decode_loss, aux_loss):
        assert [m.shape for m in loss.prev_confidence] == [(8, 8), (6, 8)]
        assert all(torch.all(m == -1) for m in loss.prev_confidence)

    # the batch is padded to 8 x 8: rows 6, 7 of image 1 are padding
    current = torch.full((2, 8, 8), 0.25)
    current[1] = 0.75
    current[1, 6:] = -1.0
    current[0, :4, :4] = 1.0
    decode_loss.last_confidence = current
    aux_loss.last_confidence = torch.zeros(2, 8, 8)  # must not be written
    decode_loss.last_known_fraction = 0.0
    hook.after_train_iter(runner, 0, batch, {})
    assert decode_loss.prev_confidence is None
    stored = np.asarray(hook.memory.array)
    expected0 = np.full((4, 4), round(0.25 * 254))
    expected0[:2, :2] = 254
    assert np.array_equal(stored[0], expected0)
    # image 1 is 6 x 8: its 4 x 4 grid cells cover 1.5 rows each
    assert np.all(stored[1] == round(0.75 * 254))

    hook.before_train_iter(runner, 1, batch)
    read0 = decode_loss.prev_confidence[0]
    assert read0[0, 0] == 1.0 and read0[7, 7] == pytest.approx(
        round(0.25 * 254) / 254)


def _train(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _hook(runner):
    return next(h for h in runner.hooks
                if type(h).__name__ == 'PrevPredictionHook')


def test_training_fills_memory_and_loss_reads_it(tmp_path, shapes_root):
    # 12 images, batch 2: the second pass starts at iteration 7
    cfg = tiny_config('segformer', str(tmp_path), shapes_root, max_iters=14,
                      memory_grid=(8, 8))
    cfg.custom_hooks[0].log_interval = 7
    runner = _train(cfg)
    hook = _hook(runner)
    loss = runner.model.decode_head.loss_decode
    assert hook.memory.filled_fraction() > 0.5
    stored = np.asarray(hook.memory.array)
    assert np.all((stored != 255).any(axis=(1, 2)))  # every image written
    hits = runner.message_hub.get_scalar('train/memory_hit').data[0]
    assert hits[0] == 0.0  # first iteration: nothing stored yet
    assert loss.last_known_fraction > 0.5 and hits[-1] > 0.5
    log = open(runner.logger.log_file).read()
    assert 'MiB on disk' in log and 'of the memory filled' in log


def _resumable_cfg(tmp_path, shapes_root, work_dir, max_iters, grid=(8, 8)):
    cfg = tiny_config('segformer', str(work_dir), shapes_root,
                      max_iters=max_iters, tmp_dir=str(tmp_path),
                      memory_grid=grid)
    # deterministic model: no dropout or drop path
    cfg.model.backbone.drop_path_rate = 0.0
    cfg.model.decode_head.dropout_ratio = 0.0
    cfg.default_hooks.checkpoint.interval = 4
    return cfg


def test_resume_restores_memory_and_reproduces_losses(tmp_path, shapes_root):
    full = _train(_resumable_cfg(tmp_path, shapes_root, tmp_path / 'full', 8))
    full_losses = full.message_hub.get_scalar(
        'train/decode.loss_pat').data[0]
    full_memory = np.array(_hook(full).memory.array)
    assert osp.isfile(tmp_path / 'full/prev_prediction_memory/snapshots/'
                      'iter_4.u8')

    cfg = _resumable_cfg(tmp_path, shapes_root, tmp_path / 'resumed', 8)
    cfg.load_from = str(tmp_path / 'full' / 'iter_4.pth')
    cfg.resume = True
    resumed = _train(cfg)
    losses = resumed.message_hub.get_scalar('train/decode.loss_pat').data[0]
    assert len(losses) == 8
    np.testing.assert_allclose(losses[4:], full_losses[4:], rtol=1e-5)
    assert np.array_equal(np.asarray(_hook(resumed).memory.array),
                          full_memory)


def test_resume_refuses_bad_snapshots(tmp_path, shapes_root):
    _train(_resumable_cfg(tmp_path, shapes_root, tmp_path / 'a', 4))
    ckpt = str(tmp_path / 'a' / 'iter_4.pth')

    def resume(grid=(8, 8), **hook_options):
        cfg = _resumable_cfg(tmp_path, shapes_root, tmp_path / 'b', 6, grid)
        cfg.custom_hooks[0].update(hook_options)
        cfg.load_from, cfg.resume = ckpt, True
        return _train(cfg)

    with pytest.raises(MemoryMismatchError, match=r'grid.*\[8, 8\] stored'):
        resume(grid=(4, 8))
    snapshot = tmp_path / 'a/prev_prediction_memory/snapshots/iter_4.u8'
    data = bytearray(snapshot.read_bytes())
    data[0] = (data[0] + 1) % 256
    snapshot.write_bytes(bytes(data))
    with pytest.raises(MemoryMismatchError, match='corrupt'):
        resume()
    snapshot.unlink()
    with pytest.raises(FileNotFoundError, match='strict_resume=False'):
        resume()
    runner = resume(strict_resume=False)
    assert runner.iter == 6


def test_hook_needs_pat_loss_and_pipeline(tmp_path, shapes_root):
    cfg = tiny_config('segformer', str(tmp_path), shapes_root,
                      loss=dict(type='CrossEntropyLoss'), memory_grid=(4, 4))
    with pytest.raises(ValueError, match='no PATLoss'):
        _train(cfg)
    cfg = tiny_config('segformer', str(tmp_path), shapes_root,
                      memory_grid=(4, 4))
    cfg.train_dataloader.dataset.pipeline.pop(2)  # LoadPixelOrigins
    with pytest.raises(ValueError, match='LoadPixelOrigins'):
        _train(cfg)
