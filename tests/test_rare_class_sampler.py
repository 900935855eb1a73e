"""RareClassSampler (DAFormer's rare-class sampling) through MMSeg's
registry, on generated long-tailed datasets: the draws against RCS's
probabilities computed here from the raw label files, determinism, the
split over ranks, resume through MMEngine's runner, the per-image cache
and the errors."""
import glob
import itertools
import os.path as osp
import socket
import uuid

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from mmseg.registry import DATA_SAMPLERS, DATASETS
from PIL import Image

from mmseg_pat.datasets import (cached_class_counts,
                                cached_per_image_class_counts,
                                class_pixel_counts, class_statistics,
                                generate_long_tail_shapes,
                                per_image_class_counts)
from mmseg_pat.datasets import rare_class_sampler as rcs_module
from mmseg_pat.datasets.rare_class_sampler import CHUNK

from model_configs import tiny_config

# 40 images, 5 shape classes from 14 % down to 0.26 % of the pixels, the
# rarest in 3 images
RCS_SHAPES = dict(
    num_train=40,
    num_val=0,
    image_size=(32, 32),
    imbalance_ratio=20.0,
    num_shape_classes=5,
    seed=3)
NUM_CLASSES = RCS_SHAPES['num_shape_classes'] + 1


@pytest.fixture(scope='module')
def rcs_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data') / 'rcs_shapes')
    generate_long_tail_shapes(root, **RCS_SHAPES)
    return root


def _dataset(root, **kwargs):
    return DATASETS.build(
        dict(
            type='LongTailShapesDataset',
            data_root=root,
            generation=dict(RCS_SHAPES),
            data_prefix=dict(
                img_path='img_dir/train', seg_map_path='ann_dir/train'),
            pipeline=[dict(type='LoadAnnotations')],
            **kwargs))


def _sampler(dataset, cache_dir, seed=0, **options):
    cfg = dict(type='RareClassSampler', cache_dir=str(cache_dir), nproc=1)
    return DATA_SAMPLERS.build(
        dict(cfg, **options), default_args=dict(dataset=dataset, seed=seed))


def _raw_table(root):
    """Independent per-image counts: NumPy over the label PNGs, in the
    dataset's (sorted) order."""
    files = sorted(glob.glob(osp.join(root, 'ann_dir/train/*.png')))
    return np.stack([
        np.bincount(np.array(Image.open(f)).ravel(), minlength=NUM_CLASSES)
        for f in files
    ])


def _rcs_targets(table, temperature, min_share):
    """RCS written out here: p_c ∝ exp((1 - f_c) / T) over the classes
    that some image holds with min_share of its pixels, and those images."""
    frequency = table.sum(0) / table.sum()
    holds = (table >= min_share * table.sum(1, keepdims=True)) & (table > 0)
    logits = (1 - frequency) / temperature
    weights = np.where(holds.any(0), np.exp(logits - logits.max()), 0.0)
    return weights / weights.sum(), holds


def _global_draws(sampler, num):
    chunks = list(itertools.islice(sampler.draw_chunks(),
                                   -(-num // CHUNK)))
    classes = np.concatenate([c for c, _ in chunks])[:num]
    images = np.concatenate([i for _, i in chunks])[:num]
    return classes, images


def _first(sampler, num):
    return list(itertools.islice(iter(sampler), num))


# --- (a) the draws follow RCS ----------------------------------------------


@pytest.mark.parametrize('temperature', [0.01, 0.05])
def test_class_draws_match_rcs_probabilities(rcs_root, tmp_path,
                                             temperature):
    sampler = _sampler(_dataset(rcs_root), tmp_path,
                       temperature=temperature)
    table = _raw_table(rcs_root)
    target, holds = _rcs_targets(table, temperature, 0.0015)
    np.testing.assert_allclose(sampler.class_probabilities, target,
                               rtol=1e-12, atol=1e-300)
    num = 200_000
    classes, images = _global_draws(sampler, num)
    # the indices the sampler yields are those draws' images
    assert _first(sampler, num) == images.tolist()
    share = np.bincount(classes, minlength=NUM_CLASSES) / num
    tolerance = 5 * np.sqrt(target * (1 - target) / num) + 1 / num
    assert np.all(np.abs(share - target) <= tolerance), (share, target)
    # each image drawn for its class holds it, each such image as often
    assert holds[images, classes].all()
    for c in np.flatnonzero(target > 1e-3):
        members = np.flatnonzero(holds[:, c])
        drawn = images[classes == c]
        per_image = np.array([(drawn == m).sum() for m in members])
        expected = drawn.size / members.size
        assert np.all(np.abs(per_image - expected) <= 5 * np.sqrt(expected))


def test_drawn_images_move_toward_rare_classes(rcs_root, tmp_path):
    """The share of draws whose image holds class c. Uniform sampling gives
    the share of images holding c, below p_c for the rare classes; RCS
    draws c with probability p_c and other classes' images may hold it
    too, so its share reaches p_c: exactly sum_k p_k * (share of the images
    drawn for k that hold c)."""
    temperature = 0.01
    sampler = _sampler(_dataset(rcs_root), tmp_path, temperature=temperature)
    table = _raw_table(rcs_root)
    target, holds = _rcs_targets(table, temperature, 0.0015)
    num = 50_000
    _, images = _global_draws(sampler, num)
    contains = table > 0
    rcs_share = contains[images].mean(0)
    uniform_share = contains.mean(0)
    rare = np.flatnonzero(target > uniform_share)
    assert set(rare) == {3, 4, 5}  # the three rarest shape classes
    expected = sum(target[k] * contains[holds[:, k]].mean(0)
                   for k in np.flatnonzero(target))
    tolerance = 5 * np.sqrt(expected * (1 - expected) / num) + 1 / num
    assert np.all(np.abs(rcs_share - expected) <= tolerance)
    assert np.all(expected >= target - 1e-12)
    assert np.all(rcs_share[rare] > uniform_share[rare])
    # what uniform sampling falls short of p_c, RCS makes up
    assert np.all(target[rare] - uniform_share[rare] > 0.07)
    assert np.all(target - rcs_share <= tolerance)


def test_per_image_counts_and_their_cache(rcs_root, tmp_path, monkeypatch):
    dataset = _dataset(rcs_root)
    table = _raw_table(rcs_root)
    np.testing.assert_array_equal(per_image_class_counts(dataset), table)
    np.testing.assert_array_equal(class_pixel_counts(dataset), table.sum(0))
    cached, path = cached_per_image_class_counts(dataset, str(tmp_path))
    np.testing.assert_array_equal(cached, table)
    assert osp.dirname(path) == str(tmp_path) and path.endswith('.npz')

    def no_counting(*args, **kwargs):
        raise AssertionError('counted again')

    monkeypatch.setattr(class_statistics, 'per_image_class_counts',
                        no_counting)
    np.testing.assert_array_equal(
        cached_per_image_class_counts(dataset, str(tmp_path))[0], table)
    # the class counts' JSON is summed from the table beside it
    counts, json_path = cached_class_counts(dataset, str(tmp_path))
    np.testing.assert_array_equal(counts, table.sum(0))
    assert osp.dirname(json_path) == str(tmp_path)


# --- (b) (c) determinism and ranks -----------------------------------------


def test_stream_is_a_function_of_the_seed(rcs_root, tmp_path):
    dataset = _dataset(rcs_root)
    first = _first(_sampler(dataset, tmp_path, seed=7), 3000)
    again = _sampler(dataset, tmp_path, seed=7)
    assert _first(again, 3000) == first
    assert _first(again, 3000) == first  # each iteration starts over
    other = _first(_sampler(dataset, tmp_path, seed=8), 3000)
    assert other != first
    assert np.mean(np.array(other) == np.array(first)) < 0.6


def _ranked(monkeypatch, rank, world_size):
    monkeypatch.setattr(rcs_module, 'get_dist_info',
                        lambda: (rank, world_size))


@pytest.mark.parametrize('infinite', [True, False])
def test_ranks_interleave_to_the_single_process_stream(
        rcs_root, tmp_path, monkeypatch, infinite):
    dataset = _dataset(rcs_root)
    _ranked(monkeypatch, 0, 1)
    alone = _sampler(dataset, tmp_path, seed=3, infinite=infinite)
    per_rank = 25 if infinite else 10  # 40 images over 4 ranks
    single = _first(alone, 4 * per_rank)
    streams = []
    for rank in range(4):
        _ranked(monkeypatch, rank, 4)
        sampler = _sampler(dataset, tmp_path, seed=3, infinite=infinite)
        assert len(sampler) == (40 if infinite else 10)
        streams.append(_first(sampler, per_rank + 5))
    if not infinite:
        assert all(len(s) == per_rank for s in streams)
    interleaved = [streams[i % 4][i // 4] for i in range(4 * per_rank)]
    assert interleaved == single


def _rank_process(rank, world_size, port, root, out):
    """One of two gloo ranks: build the sampler, save its first draws."""
    import torch.distributed as dist
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world_size)
    try:
        if rank > 0:  # only rank 0 counts; the others are sent its table

            def no_counting(*args, **kwargs):
                raise AssertionError(f'rank {rank} counted')

            rcs_module.cached_per_image_class_counts = no_counting
        sampler = _sampler(_dataset(root), out, seed=None)
        np.save(osp.join(out, f'rank{rank}.npy'),
                [sampler.seed] + _first(sampler, 50))
    finally:
        dist.destroy_process_group()


def test_two_processes_share_rank_zeros_table_and_seed(rcs_root, tmp_path):
    """Real ranks (gloo): rank 0 counts, rank 1 gets its table; with
    seed=None the ranks agree on a seed; their draws interleave into the
    stream of one process with that seed."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    # forked: the processes start with this one's imports
    torch.multiprocessing.start_processes(
        _rank_process, args=(2, port, rcs_root, str(tmp_path)), nprocs=2,
        start_method='fork')
    (seed, *rank0), (seed1, *rank1) = [
        np.load(tmp_path / f'rank{r}.npy').tolist() for r in (0, 1)]
    assert seed1 == seed
    interleaved = [(rank0, rank1)[i % 2][i // 2] for i in range(100)]
    assert interleaved == _first(
        _sampler(_dataset(rcs_root), tmp_path, seed=seed), 100)


def test_epoch_mode_draws_len_dataset_per_epoch(rcs_root, tmp_path):
    sampler = _sampler(_dataset(rcs_root), tmp_path, infinite=False)
    assert len(sampler) == 40
    epoch0 = list(sampler)
    assert len(epoch0) == 40
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert len(epoch1) == 40 and epoch1 != epoch0
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    infinite = _sampler(_dataset(rcs_root), tmp_path)
    start = _first(infinite, 100)
    infinite.set_epoch(5)  # as MMEngine's InfiniteSampler: no effect
    assert _first(infinite, 100) == start
    assert start[:40] == epoch0  # one stream, cut at len(dataset)


def test_skip_starts_the_next_iteration_further_on(
        rcs_root, tmp_path, monkeypatch):
    """OneDL's MMEngine resumes with sampler.skip(iterations x batch)."""
    dataset = _dataset(rcs_root)
    _ranked(monkeypatch, 1, 2)
    sampler = _sampler(dataset, tmp_path)
    stream = _first(sampler, 500)
    sampler.skip(123)
    assert _first(sampler, 377) == stream[123:]
    assert _first(sampler, 500) == stream  # once only
    with pytest.raises(ValueError, match='num_samples must be an integer'):
        sampler.skip(-1)


# --- (d) resume through MMEngine's runner ----------------------------------


class _ImageRecorder(Hook):
    """The label files of each training batch, in order."""

    def __init__(self):
        self.batches = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.batches.append(
            [osp.basename(s.seg_map_path) for s in data_batch['data_samples']])


def _rcs_run(tmp_path, shapes_root, name, **options):
    cfg = tiny_config('segformer', str(tmp_path / name), shapes_root,
                      max_iters=6, tmp_dir=str(tmp_path), memory_grid=(4, 4))
    # as a user's config: only the type and RCS's options; the base's
    # shuffle=True stays
    cfg.merge_from_dict(dict(train_dataloader=dict(
        num_workers=2, persistent_workers=True,
        sampler=dict(type='RareClassSampler', temperature=0.05, nproc=1))))
    # MMSeg's plain pipeline: PrevPredictionHook adds the pixel origins and
    # builds the train loop, with its sampler, again
    cfg.train_dataloader.dataset.pipeline = [
        dict(step, type='PackSegInputs')
        if step['type'] == 'PackSegInputsWithOrigins' else step
        for step in cfg.train_dataloader.dataset.pipeline
        if step['type'] != 'LoadPixelOrigins'
    ]
    cfg.custom_hooks.append(dict(type='PlainCheckpointHook'))
    cfg.default_hooks.checkpoint.interval = 3
    cfg.merge_from_dict(options)
    runner = Runner.from_cfg(cfg)
    recorder = _ImageRecorder()
    runner.register_hook(recorder)
    runner.train()
    # Stop the persistent workers now: left to the garbage collector (the
    # runner and its loop form a cycle), each took its 5 s join timeout
    # here, in whichever test ran next; stopped, all in < 0.1 s.
    runner.train_loop.dataloader_iterator._iterator._shutdown_workers()
    return runner, recorder.batches


def test_resume_through_the_runner_draws_the_same_images(tmp_path,
                                                         shapes_root):
    """IterBasedTrainLoop with 2 persistent workers, PrevPredictionHook
    (which builds the train loop again) and a checkpoint at iteration 3:
    the resumed run trains on the images of the uninterrupted one."""
    full, batches = _rcs_run(tmp_path, shapes_root, 'full')
    sampler = full.train_loop.dataloader.sampler
    assert type(sampler).__name__ == 'RareClassSampler'
    assert sampler.seed == 0 and sampler.temperature == 0.05
    assert len(batches) == 6
    # the batches are the sampler's stream for seed 0, in order
    dataset = full.train_dataloader.dataset
    names = [osp.basename(dataset.get_data_info(i)['seg_map_path'])
             for i in _first(sampler, 12)]
    assert sum(batches, []) == names
    # the per-image table is counted once and cached in the work dir; the
    # rebuilt loop's sampler reads it
    assert glob.glob(str(tmp_path / 'full' /
                         'class_counts_per_image_train_*.npz'))
    log = open(full.logger.log_file).read()
    assert log.count('class draw probabilities') == 2
    assert log.count('counting the class pixels of each training image') == 1

    resumed, after = _rcs_run(
        tmp_path, shapes_root, 'resumed',
        load_from=str(tmp_path / 'full' / 'iter_3.pth'), resume=True)
    assert resumed.iter == 6
    assert after == batches[3:]


# --- (e) errors and logging -------------------------------------------------


@pytest.mark.parametrize('options,match', [
    (dict(temperature=0), r'temperature must be a number > 0, got 0'),
    (dict(temperature=-0.5), r'got -0\.5'),
    (dict(temperature=float('nan')), r'got nan'),
    (dict(temperature='0.01'), r"got '0\.01'"),
    (dict(min_pixels=0), r'min_pixels must be a pixel count .*got 0'),
    (dict(min_pixels=1.5), r'got 1\.5'),
    (dict(min_pixels=True), r'got True'),
    (dict(shuffle=False), r'shuffle must be True, got False'),
    (dict(infinite=1), r'infinite must be True or False'),
    (dict(nproc=0), r'nproc must be an integer >= 1'),
])
def test_bad_arguments_are_refused(rcs_root, tmp_path, options, match):
    with pytest.raises(ValueError, match=match):
        _sampler(_dataset(rcs_root), tmp_path, **options)


def test_no_class_with_enough_pixels(rcs_root, tmp_path):
    most = _raw_table(rcs_root).max()
    with pytest.raises(
            ValueError,
            match=r'no training image holds any class with at least 5000 '
            rf'pixels .*most pixels of a class in one image: {most}\)'):
        _sampler(_dataset(rcs_root), tmp_path, min_pixels=5000)


def test_labels_outside_the_classes(rcs_root, tmp_path):
    dataset = DATASETS.build(
        dict(
            type='BaseSegDataset',
            data_root=rcs_root,
            data_prefix=dict(
                img_path='img_dir/train', seg_map_path='ann_dir/train'),
            img_suffix='.png',
            seg_map_suffix='.png',
            metainfo=dict(classes=('a', 'b')),
            pipeline=[]))
    with pytest.raises(ValueError, match=r'are outside \[0, 2\)'):
        _sampler(dataset, tmp_path)


def test_a_cache_of_another_class_count_is_refused(rcs_root, tmp_path):
    dataset = _dataset(rcs_root)
    _, path = cached_per_image_class_counts(dataset, str(tmp_path))
    np.savez_compressed(path, counts=np.ones((40, 4), np.int64),
                        classes=np.array(['a', 'b', 'c', 'd']))
    with pytest.raises(
            ValueError,
            match=r'per-image counts of shape \(40, 4\).*the dataset has 40 '
            r'label maps and the 6 classes.*delete it'):
        _sampler(dataset, tmp_path)


class _Reversed:
    """A wrapper that reorders its dataset's images."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.metainfo = dataset.metainfo

    def __len__(self):
        return len(self.dataset)

    def get_data_info(self, idx):
        return self.dataset.get_data_info(len(self) - 1 - idx)


def test_wrappers(rcs_root, tmp_path):
    dataset = _dataset(rcs_root)
    with pytest.raises(ValueError, match=r'the _Reversed given orders its '
                       'images otherwise'):
        _sampler(_Reversed(dataset), tmp_path)
    repeated = DATASETS.build(dict(type='RepeatDataset', times=3,
                                   dataset=dataset))
    sampler = _sampler(repeated, tmp_path, infinite=False)
    assert len(sampler) == 120
    assert list(sampler)[:40] == list(_sampler(dataset, tmp_path,
                                               infinite=False))


def test_never_drawn_classes_are_logged_once(rcs_root, tmp_path):
    logger = MMLogger.get_instance(f'rcs_{uuid.uuid4().hex}',
                                   log_file=str(tmp_path / 'log.txt'))
    assert MMLogger.get_current_instance() is logger
    dataset = _dataset(rcs_root)
    for _ in range(2):  # e.g. PrevPredictionHook builds the loop again
        sampler = _sampler(dataset, tmp_path, min_pixels=50)
    never = np.flatnonzero(sampler.images_per_class == 0)
    assert never.size and np.all(sampler.class_probabilities[never] == 0)
    names = [dataset.metainfo['classes'][c] for c in never]
    for handler in logger.handlers:
        handler.flush()
    log = open(tmp_path / 'log.txt').read()
    assert log.count(f'no training image holds the classes {names} with at '
                     'least 50 pixels: they are never drawn for') == 1
    assert log.count('class draw probabilities') == 2
