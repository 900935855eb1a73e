"""PrevPredictionHook, PredictionMemory and the pixel-origin transforms."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
import warnings
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

from mmseg_pat import STACK
from mmseg_pat.engine import (DirectoryInUseError, DirectoryLock,
                              MemoryMismatchError, MemorySnapshotError,
                              PredictionMemory)

from conftest import PROJECT
from model_configs import tiny_config
from write_recorder import check_reads

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
    steps = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='LoadPixelOrigins'),
        dict(type='RandomResize', scale=(90, 60), ratio_range=(1.0, 1.6),
             keep_ratio=True),
        dict(type='RandomCrop', crop_size=(48, 72)),
        dict(type='RandomFlip', prob=flip_prob, direction='horizontal'),
        dict(type='PackSegInputsWithOrigins'),
    ]
    pipeline = Compose([TRANSFORMS.build(t) for t in steps])
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


@pytest.mark.parametrize('transform, moved', [
    (dict(type='RandomResize', scale=(90, 60), ratio_range=(1.0, 1.6)),
     'scale_factor'),
    (dict(type='RandomCrop', crop_size=(20, 30)), 'label 20x30'),
    (dict(type='RandomFlip', prob=0.5), 'flip'),
])
def test_origins_after_a_geometric_transform_are_refused(
        image_files, transform, moved):
    pipeline = Compose([TRANSFORMS.build(t) for t in [
        dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
        transform, dict(type='LoadPixelOrigins')]])
    with pytest.raises(ValueError, match=rf'already changed it \({moved}'):
        pipeline(dict(img_path=image_files[0], seg_map_path=image_files[1],
                      reduce_zero_label=False, seg_fields=[], sample_idx=0))


def _memory(num_images, grid, device='cpu'):
    return PredictionMemory(
        PredictionMemory.make_meta(num_images, grid, 250, 'test'), device)


def test_memory_value_lands_in_its_cell_and_reads_back_aligned(image_files):
    """Pixel-resolution grid: a value written from one augmented crop reads
    back, at the next visit (another crop and no flip), exactly where the
    same original pixels are."""
    label = image_files[2]
    memory = _memory(5, (H, W))
    first = _augment(image_files, seed=0, flip_prob=1.0)
    second = _augment(image_files, seed=5, flip_prob=0.0)
    idx = torch.tensor([3])

    value = first.gt_sem_seg.data.float() / 254  # encodes the position
    cells = [memory.cells(first.pixel_origin.data, first.origin_shape)]
    memory.write(idx, memory.cell_means(idx, cells, value))
    grid = memory.table[3].numpy()
    row, col = first.pixel_origin.data.numpy()
    assert np.array_equal(grid[row, col], label[row, col])
    assert np.count_nonzero(grid != 255) == len(set(zip(row.ravel(),
                                                        col.ravel())))
    assert torch.all(memory.table[[0, 1, 2, 4]] == 255)

    cells = [memory.cells(second.pixel_origin.data, second.origin_shape)]
    read = memory.read(idx, cells)[0]
    seen = read >= 0
    assert seen.float().mean() > 0.3  # the two crops overlap
    expected = second.gt_sem_seg.data[0].float() / 254
    torch.testing.assert_close(read[seen], expected[seen], atol=1e-6, rtol=0)


def test_coarse_grid_stores_cell_means_and_keeps_untouched_cells():
    memory = _memory(2, (2, 2))
    rows, cols = np.mgrid[0:4, 0:4]
    origin = torch.from_numpy(np.stack([rows, cols]))
    confidence = torch.tensor([[0.0, 1.0, 0.5, 0.5], [0.5, 0.5, 0.5, -1.0],
                               [0.2, 0.2, 0.9, 0.9], [0.2, 0.2, -1.0, -1.0]])
    idx = torch.tensor([1])
    cells = [memory.cells(origin, (4, 4))]
    memory.write(idx, memory.cell_means(idx, cells, confidence[None]))
    expected = np.round(np.array([[0.5, 0.5], [0.2, 0.9]]) * 254)
    assert np.array_equal(memory.table[1].numpy(), expected)
    # the next visit sees only the top-left cell: the others keep theirs
    confidence = torch.full((1, 4, 4), -1.0)
    confidence[0, 0, 0] = 0.1
    memory.write(idx, memory.cell_means(idx, cells, confidence))
    expected[0, 0] = round(0.1 * 254)
    assert np.array_equal(memory.table[1].numpy(), expected)
    assert torch.all(memory.table[0] == 255)


def test_write_last_entry_wins_and_padding_changes_nothing():
    memory = _memory(3, (1, 2))
    idx = torch.tensor([2, 0, 2, memory.padding_index])
    rows = torch.tensor([[1, 1], [5, 5], [9, 9], [7, 7]], dtype=torch.uint8)
    memory.write(idx, rows)
    assert memory.table.view(3, 2).tolist() == [[5, 5], [255, 255], [9, 9]]


def test_state_dict_round_trip_and_refusals(tmp_path):
    memory = _memory(4, (8, 8))
    memory.table[1] = 7
    state = memory.state_dict()
    other = _memory(4, (8, 8))
    other.load_state_dict(state)
    assert torch.equal(other.table, memory.table)

    wrong = PredictionMemory(
        dict(memory.meta, grid=[16, 8], num_images=5), 'cpu')
    with pytest.raises(MemoryMismatchError,
                       match=r'number of training images: 4 stored, 5 now.*'
                       r'grid \(rows, cols\): \[8, 8\] stored, \[16, 8\]'):
        wrong.load_state_dict(state)
    damaged = dict(state, table=state['table'].clone())
    damaged['table'][0, 0, 0] = 3
    with pytest.raises(MemorySnapshotError, match='corrupt'):
        other.load_state_dict(damaged)

    memory.save(str(tmp_path))
    meta, table = PredictionMemory.load_file(str(tmp_path))
    assert meta == memory.meta and np.array_equal(table,
                                                  memory.table.numpy())
    with open(tmp_path / 'memory.u8', 'ab') as f:
        f.write(b'x')
    with pytest.raises(MemorySnapshotError, match='truncated or corrupt'):
        PredictionMemory.load_file(str(tmp_path))


def _sample(idx, height, width, label):
    s = SegDataSample()
    s.gt_sem_seg = PixelData(data=label[None])
    rows, cols = torch.meshgrid(
        torch.arange(height), torch.arange(width), indexing='ij')
    s.pixel_origin = PixelData(data=torch.stack([rows, cols]).int())
    s.set_metainfo(dict(sample_idx=idx, origin_shape=(height, width)))
    return s


def _mock_runner(tmp_path, model, num_images):
    dataset = Mock(pipeline=Mock(transforms=[
        TRANSFORMS.build(dict(type='LoadAnnotations')),
        TRANSFORMS.build(dict(type='LoadPixelOrigins')),
        TRANSFORMS.build(dict(type='PackSegInputsWithOrigins'))
    ]), metainfo=dict(classes=('a', 'b', 'c', 'd')))
    dataset.__len__ = Mock(return_value=num_images)
    dataset.get_data_info = lambda i: dict(seg_map_path=f'{i}.png')
    del dataset.dataset
    runner = Mock(model=model, work_dir=str(tmp_path), iter=0, hooks=[],
                  experiment_name='mock_run')
    runner.train_dataloader.dataset = dataset
    return runner


def test_hook_alone_reads_by_sample_index(tmp_path, shapes_root):
    """The hook hands stored maps to every PATLoss, reads each image by its
    dataset index (not its batch position) and stores the decode head's
    confidences only, padding handled at bottom / right."""
    cfg = tiny_config('upernet', str(tmp_path), shapes_root,
                      memory_grid=(4, 4))
    model = MODELS.build(cfg.model)
    runner = _mock_runner(tmp_path, model, 3)
    hook = HOOKS.build(dict(type='PrevPredictionHook', grid=(4, 4)))
    hook.before_train(runner)
    decode_loss = model.decode_head.loss_decode
    aux_loss = model.auxiliary_head.loss_decode

    # images 2 and 0 at batch positions 0 and 1
    batch = dict(data_samples=[
        _sample(2, 8, 8, torch.zeros(8, 8, dtype=torch.long)),
        _sample(0, 6, 8, torch.ones(6, 8, dtype=torch.long))
    ])
    hook.before_train_iter(runner, 0, batch)
    exchange = decode_loss.exchange
    assert aux_loss.exchange is exchange
    assert [m.shape for m in exchange.previous] == [(8, 8), (6, 8)]
    assert all(torch.all(m == -1) for m in exchange.previous)

    # the batch is padded to 8 x 8: rows 6, 7 of image 0 are padding
    current = torch.full((2, 8, 8), 0.25)
    current[1] = 0.75
    current[1, 6:] = -1.0
    current[0, :4, :4] = 1.0
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    exchange.record(aux_loss, torch.zeros(2, 8, 8), labels)
    exchange.record(decode_loss, current, labels)
    hook.after_train_iter(runner, 0, batch, {})
    assert decode_loss.exchange is None and aux_loss.exchange is None
    stored = hook.memory.table.numpy()
    expected2 = np.full((4, 4), round(0.25 * 254))
    expected2[:2, :2] = 254
    assert np.array_equal(stored[2], expected2)
    # image 0 is 6 x 8: its 4 x 4 grid cells cover 1.5 rows each
    assert np.all(stored[0] == round(0.75 * 254))
    assert np.all(stored[1] == 255)

    # the next batch holds image 0 alone, at position 0
    batch = dict(data_samples=[
        _sample(0, 6, 8, torch.ones(6, 8, dtype=torch.long))])
    hook.before_train_iter(runner, 1, batch)
    read = decode_loss.exchange.previous[0]
    assert torch.allclose(read, torch.tensor(round(0.75 * 254) / 254))


def _train(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _hook(runner):
    return next(h for h in runner.hooks
                if type(h).__name__ == 'PrevPredictionHook')


def _record(cfg):
    cfg.custom_hooks += [dict(type='MemoryRecorderHook'),
                         dict(type='CurrentRecorderHook')]


@pytest.mark.parametrize('workers', [0, 2])
def test_training_reads_each_image_from_its_own_cells(tmp_path, shapes_root,
                                                      workers):
    # 12 images, batch 2, shuffled: the second pass starts at iteration 7
    cfg = tiny_config('segformer', str(tmp_path), shapes_root, max_iters=14,
                      memory_grid=(8, 8))
    cfg.custom_hooks[0].log_interval = 7
    cfg.train_dataloader.update(num_workers=workers,
                                persistent_workers=workers > 0)
    _record(cfg)
    runner = _train(cfg)
    hook = _hook(runner)
    table = check_reads(str(tmp_path), 12, (8, 8))
    stored = hook.memory.table.numpy().reshape(12, -1)
    assert np.abs(stored.astype(int) - table).max() <= 1
    assert np.all((stored != 255).any(axis=1))  # every image written
    hits = runner.message_hub.get_scalar('train/memory_hit').data[0]
    assert hits[0] == 0.0 and hits[-1] > 0.5
    log = open(runner.logger.log_file).read()
    assert 'MiB on cpu' in log and 'of the memory filled' in log
    # this node's copy is written at the end, and the lock is gone
    _, on_disk = PredictionMemory.load_file(
        str(tmp_path / 'prev_prediction_memory'))
    assert np.array_equal(on_disk, hook.memory.table.numpy())
    assert not osp.exists(tmp_path / 'prev_prediction_memory/lock.json')


def _resumable_cfg(tmp_path, shapes_root, work_dir, max_iters, grid=(8, 8)):
    cfg = tiny_config('segformer', str(work_dir), shapes_root,
                      max_iters=max_iters, tmp_dir=str(tmp_path),
                      memory_grid=grid)
    # resumed runs load checkpoints of other work dirs under tmp_path
    cfg.custom_hooks.append(
        dict(type='PlainCheckpointHook'))
    # deterministic model: no dropout or drop path
    cfg.model.backbone.drop_path_rate = 0.0
    cfg.model.decode_head.dropout_ratio = 0.0
    cfg.default_hooks.checkpoint.interval = 4
    return cfg


def _augmentations_replayable_on_resume(cfg):
    """OneDL difference: onedl-mmengine (0.10.12) resumes by moving the
    sampler on without loading the skipped batches, so the random
    transforms of the resumed run draw from another random state than the
    uninterrupted run's (upstream's mmengine loads those batches). There,
    the losses match only with augmentations that draw nothing."""
    if STACK == 'onedl':
        for step in cfg.train_dataloader.dataset.pipeline:
            if step['type'] == 'RandomResize':
                step['ratio_range'] = (1.0, 1.0)  # the crop is then the image
            if step['type'] == 'RandomFlip':
                step['prob'] = 0.0
    return cfg


def test_resume_restores_memory_and_reproduces_losses(tmp_path, shapes_root):
    full = _train(_augmentations_replayable_on_resume(
        _resumable_cfg(tmp_path, shapes_root, tmp_path / 'full', 8)))
    full_losses = full.message_hub.get_scalar(
        'train/decode.loss_pat').data[0]
    full_memory = _hook(full).memory.table.clone()

    cfg = _augmentations_replayable_on_resume(
        _resumable_cfg(tmp_path, shapes_root, tmp_path / 'resumed', 8))
    cfg.load_from = str(tmp_path / 'full' / 'iter_4.pth')
    cfg.resume = True
    resumed = _train(cfg)
    losses = resumed.message_hub.get_scalar('train/decode.loss_pat').data[0]
    assert len(losses) == 8
    np.testing.assert_allclose(losses[4:], full_losses[4:], rtol=1e-5)
    assert torch.equal(_hook(resumed).memory.table, full_memory)
    log = open(resumed.logger.log_file).read()
    assert 'memory restored at iteration 4' in log


def test_checkpoint_names_and_folders_do_not_matter(tmp_path, shapes_root):
    """The snapshot travels inside the checkpoint, whatever its name or
    folder, and only there."""
    cfg = _resumable_cfg(tmp_path, shapes_root, tmp_path / 'a', 4)
    cfg.default_hooks.checkpoint.update(
        interval=2, filename_tmpl='model_{}.pth', max_keep_ckpts=1,
        out_dir=str(tmp_path / 'elsewhere'))
    first = _train(cfg)
    saved = sorted(os.listdir(tmp_path / 'elsewhere' / 'a'))
    assert [s for s in saved if s.endswith('.pth')] == ['model_4.pth']
    ckpt = torch.load(str(tmp_path / 'elsewhere' / 'a' / 'model_4.pth'),
                      weights_only=False)
    assert torch.equal(ckpt['prev_prediction_memory']['table'],
                       _hook(first).memory.table)
    # no snapshot file of its own anywhere: the checkpoint holds it
    u8 = glob.glob(str(tmp_path / '**' / '*.u8'), recursive=True)
    assert [osp.basename(p) for p in u8] == ['memory.u8']

    cfg = _resumable_cfg(tmp_path, shapes_root, tmp_path / 'b', 6)
    cfg.load_from = str(tmp_path / 'elsewhere' / 'a' / 'model_4.pth')
    cfg.resume = True
    filled = _hook(first).memory.filled_fraction()
    log = open(_train(cfg).logger.log_file).read()
    assert f'memory restored at iteration 4 ({filled:.1%}' in log


def test_resume_refuses_bad_snapshots(tmp_path, shapes_root):
    _train(_resumable_cfg(tmp_path, shapes_root, tmp_path / 'a', 4))
    good = tmp_path / 'a' / 'iter_4.pth'
    checkpoint = torch.load(str(good), weights_only=False)

    def resume(ckpt, grid=(8, 8), **hook_options):
        cfg = _resumable_cfg(tmp_path, shapes_root, tmp_path / 'b', 6, grid)
        cfg.custom_hooks[0].update(hook_options)
        cfg.load_from, cfg.resume = str(ckpt), True
        return _train(cfg)

    with pytest.raises(MemoryMismatchError, match=r'grid.*\[8, 8\] stored'):
        resume(good, grid=(4, 8))
    corrupt = tmp_path / 'corrupt.pth'
    damaged = dict(checkpoint)
    damaged['prev_prediction_memory'] = dict(
        checkpoint['prev_prediction_memory'])
    table = damaged['prev_prediction_memory']['table'].clone()
    table.view(-1)[0] += 1
    damaged['prev_prediction_memory']['table'] = table
    torch.save(damaged, str(corrupt))
    with pytest.raises(MemorySnapshotError, match='corrupt.*strict_resume'):
        resume(corrupt)
    missing = tmp_path / 'missing.pth'
    torch.save({k: v for k, v in checkpoint.items()
                if k != 'prev_prediction_memory'}, str(missing))
    with pytest.raises(MemorySnapshotError,
                       match='no prediction-memory snapshot.*strict_resume'):
        resume(missing)
    for ckpt in (corrupt, missing):
        runner = resume(ckpt, strict_resume=False)
        assert runner.iter == 6
        log = open(runner.logger.log_file).read()
        assert 'starts empty (strict_resume=False)' in log


def test_hook_needs_pat_loss(tmp_path, shapes_root):
    cfg = tiny_config('segformer', str(tmp_path), shapes_root,
                      loss=dict(type='CrossEntropyLoss'), memory_grid=(4, 4))
    with pytest.raises(ValueError, match='no PATLoss'):
        _train(cfg)


def _plain(pipeline):
    """MMSeg's usual pipeline: without the pixel origins."""
    steps = [t for t in pipeline if t['type'] != 'LoadPixelOrigins']
    return [dict(type='PackSegInputs') if t['type'] ==
            'PackSegInputsWithOrigins' else t for t in steps]


def test_hook_adds_the_origin_transforms_with_workers(tmp_path,
                                                      shapes_root):
    """Two edits switch a config to PAT: the loss and the hook. The hook
    puts the pixel origins into the plain pipeline, and the loader's
    workers (already started) use the new pipeline from the first batch."""
    cfg = tiny_config('segformer', str(tmp_path), shapes_root, max_iters=4)
    cfg.custom_hooks = [dict(type='PrevPredictionHook', grid=(4, 4))]
    cfg.train_dataloader.update(num_workers=2, persistent_workers=True)
    cfg.train_dataloader.dataset.pipeline = _plain(
        cfg.train_dataloader.dataset.pipeline)
    runner = _train(cfg)
    transforms = runner.train_dataloader.dataset.pipeline.transforms
    names = [type(t).__name__ for t in transforms]
    assert names[names.index('LoadAnnotations') + 1] == 'LoadPixelOrigins'
    assert names[-1] == 'PackSegInputsWithOrigins'
    assert transforms[-1].meta_keys == TRANSFORMS.build(
        dict(type='PackSegInputs')).meta_keys
    hits = runner.message_hub.get_scalar('train/memory_hit').data[0]
    assert len(hits) == 4
    log = open(runner.logger.log_file).read()
    assert 'added to the training pipeline: LoadPixelOrigins' in log


def test_hook_refuses_a_pipeline_it_cannot_read(tmp_path, shapes_root):
    cfg = tiny_config('segformer', str(tmp_path), shapes_root)
    cfg.custom_hooks = [dict(type='PrevPredictionHook', grid=(4, 4))]
    pipeline = _plain(cfg.train_dataloader.dataset.pipeline)
    pipeline[-1] = dict(type='PackSegInputsWithOrigins')
    pipeline.insert(0, dict(type='LoadPixelOrigins'))
    cfg.train_dataloader.dataset.pipeline = pipeline
    with pytest.raises(ValueError, match='comes before LoadAnnotations'):
        _train(cfg)
    cfg = tiny_config('segformer', str(tmp_path), shapes_root)
    cfg.custom_hooks = [dict(type='PrevPredictionHook', grid=(4, 4))]
    cfg.train_dataloader.dataset.pipeline = [
        t for t in _plain(cfg.train_dataloader.dataset.pipeline)
        if t['type'] != 'LoadAnnotations']
    with pytest.raises(ValueError, match='cannot find LoadAnnotations'):
        _train(cfg)


def test_pat_loss_without_the_hook_says_so_once(tmp_path, shapes_root):
    cfg = tiny_config('segformer', str(tmp_path), shapes_root, max_iters=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        runner = _train(cfg)
    said = [w for w in caught if 'without PrevPredictionHook' in str(
        w.message)]
    assert len(said) == 1
    assert 'without PrevPredictionHook' in open(runner.logger.log_file).read()
    loss = MODELS.build(dict(type='PATLoss', confidence='current'))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    assert not caught


def test_hook_does_nothing_outside_training(tmp_path, shapes_root):
    train = _train(tiny_config('segformer', str(tmp_path / 'a'), shapes_root,
                               max_iters=2, tmp_dir=str(tmp_path),
                               memory_grid=(4, 4)))
    memory_dir = tmp_path / 'a' / 'prev_prediction_memory'
    before = (memory_dir / 'memory.u8').read_bytes()
    for run in ('val', 'test'):
        cfg = tiny_config('segformer', str(tmp_path / 'a'), shapes_root,
                          max_iters=2, tmp_dir=str(tmp_path),
                          memory_grid=(4, 4))
        cfg.load_from = str(tmp_path / 'a' / 'iter_2.pth')
        getattr(Runner.from_cfg(cfg), run)()
        assert (memory_dir / 'memory.u8').read_bytes() == before
        assert not (memory_dir / 'lock.json').exists()
    assert train.iter == 2


def test_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    sleeper = subprocess.Popen([sys.executable, '-c',
                                'import time; time.sleep(60)'])
    try:
        other = DirectoryLock(str(tmp_path), 'run_a')
        other_content = dict(host=os.uname().nodename, pid=sleeper.pid,
                             run='run_a', started='now')
        with open(tmp_path / 'lock.json', 'w') as f:
            json.dump(other_content, f)
        with pytest.raises(DirectoryInUseError,
                           match=rf"in use by the training run 'run_a' "
                           rf'\(pid {sleeper.pid} on host'):
            DirectoryLock(str(tmp_path), 'run_b').acquire()
        # another process of the same run: shares, does not own
        assert DirectoryLock(str(tmp_path), 'run_a').acquire() is False
    finally:
        sleeper.kill()
        sleeper.wait()
    lock = DirectoryLock(str(tmp_path), 'run_b')
    logger = Mock()
    assert lock.acquire(logger) is True
    assert 'has ended' in logger.warning.call_args[0][0]
    lock.release()
    assert not (tmp_path / 'lock.json').exists()
    assert other.owned is False


def test_lock_from_another_host_is_taken_over_once_its_heartbeat_stops(
        tmp_path):
    """A job requeued on another node of a shared file system: the lock of
    its killed predecessor names a host where no pid can be checked; it is
    taken over when its file stops being touched, and refused while its
    owner's heartbeat goes on."""
    owner = DirectoryLock(str(tmp_path), 'run_a', heartbeat_s=0.1)
    assert owner.acquire() is True
    content = json.loads((tmp_path / 'lock.json').read_text())
    # the same owner, seen from another host
    (tmp_path / 'lock.json').write_text(
        json.dumps(dict(content, host='node-elsewhere')))
    with pytest.raises(DirectoryInUseError,
                       match="'run_a' .* on host node-elsewhere"):
        DirectoryLock(str(tmp_path), 'run_b', heartbeat_s=0.1).acquire()
    owner.release()
    assert not (tmp_path / 'lock.json').exists()

    # killed on its host: the lock stays, untouched
    (tmp_path / 'lock.json').write_text(
        json.dumps(dict(content, host='node-elsewhere', pid=1)))
    logger = Mock()
    lock = DirectoryLock(str(tmp_path), 'run_b', heartbeat_s=0.1)
    assert lock.acquire(logger) is True
    assert 'watching its heartbeat' in logger.info.call_args[0][0]
    assert 'has ended' in logger.warning.call_args[0][0]
    assert json.loads((tmp_path / 'lock.json').read_text())['run'] == 'run_b'
    lock.release()
    with pytest.raises(ValueError, match='heartbeat_s must be > 0'):
        DirectoryLock(str(tmp_path), 'run_c', heartbeat_s=0)


def _train_command(config, work_dir, *options):
    cmd = [sys.executable, osp.join(PROJECT, 'tools', 'train.py'), config,
           '--work-dir', work_dir]
    if options:
        cmd += ['--cfg-options', *options]
    return cmd


def test_a_second_process_cannot_damage_a_live_memory(tmp_path,
                                                      shapes_root):
    """tools/test.py on the work dir of a live training run changes nothing
    of its memory, a second training run there is refused naming the
    owner, and the first run's checkpoints then resume a filled memory."""
    work_dir = str(tmp_path / 'work')
    cfg = _resumable_cfg(tmp_path, shapes_root, work_dir, 8)
    cfg.custom_imports = dict(
        imports=['mmseg_pat', 'write_recorder'], allow_failed_imports=False)
    paused, release = str(tmp_path / 'paused'), str(tmp_path / 'release')
    cfg.custom_hooks.append(
        dict(type='PauseHook', at=6, paused=paused, release=release))
    config = str(tmp_path / 'pause.py')
    cfg.dump(config)
    env = dict(os.environ, PYTHONPATH=osp.join(PROJECT, 'tests'),
               OMP_NUM_THREADS='1')
    training = subprocess.Popen(_train_command(config, work_dir), env=env,
                                cwd=PROJECT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(1200):
            if osp.exists(paused) or training.poll() is not None:
                break
            time.sleep(0.1)
        assert osp.exists(paused), training.communicate()[0][-3000:]
        memory_dir = osp.join(work_dir, 'prev_prediction_memory')
        before = open(osp.join(memory_dir, 'memory.u8'), 'rb').read()
        test = subprocess.run(
            [sys.executable, osp.join(PROJECT, 'tools', 'test.py'), config,
             osp.join(work_dir, 'iter_4.pth'), '--work-dir', work_dir],
            env=env, cwd=PROJECT, capture_output=True, text=True, timeout=300)
        assert test.returncode == 0, test.stderr[-3000:]
        assert open(osp.join(memory_dir, 'memory.u8'), 'rb').read() == before
        second = subprocess.run(
            _train_command(config, work_dir,
                           'custom_hooks.2.at=-1'), env=env, cwd=PROJECT,
            capture_output=True, text=True, timeout=300)
        assert second.returncode != 0
        assert f'pid {training.pid} on host' in second.stderr
    finally:
        open(release, 'w').close()
        out = training.communicate(timeout=300)[0]
    assert training.returncode == 0, out[-3000:]

    cfg = _resumable_cfg(tmp_path, shapes_root, tmp_path / 'resumed', 10)
    cfg.load_from = osp.join(work_dir, 'iter_8.pth')
    cfg.resume = True
    runner = _train(cfg)
    log = open(runner.logger.log_file).read()
    restored = float(log.split('memory restored at iteration 8 (')[1].split(
        '%')[0])
    assert restored > 50


def test_hook_draws_the_memory_and_logs_per_class_curves(tmp_path,
                                                         shapes_root):
    # 12 images, batch 2: iterations 1-6 see each once, 7-12 again
    cfg = tiny_config('segformer', str(tmp_path), shapes_root, max_iters=10,
                      memory_grid=(8, 8))
    cfg.custom_hooks[0].update(vis_interval=5, log_interval=5)
    # MMSeg's runtime names its visualizer 'visualizer': in one process the
    # first runner's instance (and its folder) would be reused
    cfg.visualizer.name = f'visualizer_{tmp_path.name}'
    runner = _train(cfg)
    vis_dir = osp.join(runner.log_dir, 'vis_data')
    drawn = sorted(glob.glob(osp.join(vis_dir, 'vis_image',
                                      'prev_prediction_memory_*.png')),
                   key=lambda p: int(p.rsplit('_', 1)[1][:-4]))
    assert [osp.basename(p) for p in drawn] == [
        'prev_prediction_memory_5.png', 'prev_prediction_memory_10.png']
    first, second = (np.array(Image.open(p)) for p in drawn)
    height, width = cfg.train_dataloader.dataset.pipeline[4]['crop_size']
    assert first.shape == second.shape == (height, 4 * width, 3)
    # the stored-confidence panel: grey (never seen) at an image's first
    # visit, coloured at its second
    assert (first[:, 2 * width:3 * width] == 128).all()
    assert (second[:, 2 * width:3 * width] != 128).any()
    with open(osp.join(vis_dir, 'scalars.json')) as f:
        logged = set().union(*(json.loads(line) for line in f))
    classes = runner.train_dataloader.dataset.metainfo['classes']
    assert any(f'memory_confidence/{c}' in logged for c in classes)
