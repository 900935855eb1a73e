"""Damaged, empty and interrupted inputs of the converters and datasets.

Each case once gave a wrong answer or a confusing one: a converter killed by
SIGTERM left its hidden temporary folder behind, the Oxford-IIIT Pet
converter accepted a truncated JPEG inside a valid archive, a truncated NYU
meta ``.mat`` gave a raw ``IndexError``, an empty split list gave mmengine's
"need at least one array to concatenate" and a truncated image or label
"image file is truncated" without the file's name.
"""
import multiprocessing
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
import pytest
from mmengine.utils import track_parallel_progress, track_progress
from mmseg.registry import DATASETS

from mmseg_pat.utils.atomic import atomic_folder, temporary_folder

from conftest import TINY_SHAPES
from fake_datasets import (PET_BREEDS, PET_LIST_HEADER, PROJECT,
                           load_converter, make_cityscapes, make_nyu_downloads,
                           make_oxford_pet_downloads)

oxford_pet = load_converter('oxford_pet')
nyu = load_converter('nyu')


def _contents(root):
    """``{path relative to root: bytes}`` of the files under ``root``."""
    contents = {}
    for folder, _, files in os.walk(root):
        for file in files:
            path = osp.join(folder, file)
            with open(path, 'rb') as f:
                contents[osp.relpath(path, root)] = f.read()
    return contents


def _truncate(path, keep=0.5):
    """Cut the file ``path`` to the fraction ``keep`` of its bytes."""
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


# ---------------------------------------------------- atomic folder, SIGTERM


def test_atomic_folder_replaces_whole_or_not_at_all(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'old.txt').write_text('old')
    with pytest.raises(FileExistsError, match='--overwrite'):
        with atomic_folder(str(out)):
            pytest.fail('the block ran although out is not empty')
    with pytest.raises(KeyError):
        with atomic_folder(str(out), overwrite=True) as tmp:
            (tmp_path / tmp / 'new.txt').write_text('new')
            raise KeyError('failed half-way')
    assert os.listdir(tmp_path) == ['out']
    assert _contents(out) == {'old.txt': b'old'}
    with atomic_folder(str(out), overwrite=True) as tmp:
        (tmp_path / tmp / 'new.txt').write_text('new')
    assert os.listdir(tmp_path) == ['out']
    assert _contents(out) == {'new.txt': b'new'}


def test_a_failed_block_removes_what_a_late_writer_adds(
        tmp_path, monkeypatch):
    """A worker of a pool can still be writing into the temporary folder
    while the failed block removes it: nothing it writes is left behind."""
    unlink = os.unlink

    def unlink_while_a_worker_writes(*args, **kwargs):
        unlink(*args, **kwargs)
        try:
            with open(osp.join(tmp, 'late.txt'), 'x') as f:
                f.write('late')
        except OSError:
            pass

    with pytest.raises(KeyError):
        with atomic_folder(str(tmp_path / 'out')) as tmp:
            for k in range(3):
                (tmp_path / tmp / f'{k}.txt').write_text('early')
            monkeypatch.setattr(os, 'unlink', unlink_while_a_worker_writes)
            raise KeyError('failed half-way')
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_sigterm_raises_only_in_the_block_of_the_main_thread(tmp_path):
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(SystemExit) as exit_info:
        with temporary_folder(str(tmp_path / 'out')):
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts the sleep
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert os.listdir(tmp_path) == []

    seen = []

    def in_a_thread():
        with temporary_folder(str(tmp_path / 'out')):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen == [signal.SIG_DFL]

    def callers_handler(signum, frame):
        pass

    signal.signal(signal.SIGTERM, callers_handler)
    try:
        with temporary_folder(str(tmp_path / 'out')):
            assert signal.getsignal(signal.SIGTERM) is callers_handler
        assert signal.getsignal(signal.SIGTERM) is callers_handler
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert os.listdir(tmp_path) == []


def test_processes_forked_in_the_block_die_by_sigterm(tmp_path):
    """A worker of a pool keeps SIGTERM's default action: a Python handler,
    run between bytecodes only, can leave it waiting for ever."""
    context = multiprocessing.get_context('fork')
    started = context.Event()

    def work():
        started.set()
        time.sleep(60)

    with temporary_folder(str(tmp_path / 'out')):
        worker = context.Process(target=work)
        worker.start()
        assert started.wait(30)
        worker.terminate()
        worker.join(30)
    assert worker.exitcode == -signal.SIGTERM


@pytest.fixture(scope='module')
def many_pets(tmp_path_factory):
    """Extracted Oxford-IIIT Pet downloads with 1,200 images: long enough to
    convert that a signal sent once decoding starts arrives mid-way."""
    root = tmp_path_factory.mktemp('many_pets')
    names = [f'{breed}_{k}' for breed in PET_BREEDS for k in range(1, 34)]
    names = names[:1200]
    make_oxford_pet_downloads(str(root), trainval=names[:-200],
                              test=names[-200:])
    return root


@pytest.mark.parametrize('nproc', [1, 2])
def test_sigterm_leaves_no_temporary_folder(many_pets, tmp_path, nproc):
    """SIGTERM while the images are decoded, by this process or by a pool
    of two: exit status 128 + 15, and nothing left."""
    data = tmp_path / 'data'
    data.mkdir()
    log = tmp_path / 'stdout.txt'
    converter = osp.join(PROJECT, 'tools', 'dataset_converters',
                         'oxford_pet.py')
    command = [
        sys.executable, converter,
        str(many_pets / 'images'),
        str(many_pets / 'annotations'), '-o',
        str(data / 'oxford_pet'), '--nproc',
        str(nproc)
    ]
    with open(log, 'w') as stdout:
        proc = subprocess.Popen(
            command, stdout=stdout, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            # mmengine's progress bar: "[>>  ] 3/1200, ..."
            while not re.search(r'Decoding.*\] [1-9]\d*/', log.read_text(),
                                re.DOTALL):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, 'no progress in 120 s'
                time.sleep(0.01)
            assert os.listdir(data), 'no temporary folder while decoding'
            proc.send_signal(signal.SIGTERM)
            returncode = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert returncode != 0, 'finished before SIGTERM: make the input larger'
    assert returncode == 128 + signal.SIGTERM, log.read_text()
    assert os.listdir(data) == []


def test_sigterm_whose_exception_is_lost_still_stops(tmp_path):
    """A SIGTERM in an at-fork hook or a ``__del__``, where Python only
    prints the handler's exception: the block runs on, but nothing is
    committed and the process still exits."""
    out = tmp_path / 'out'
    with pytest.raises(SystemExit):
        with atomic_folder(str(out)) as tmp:
            try:
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            except SystemExit:
                pass  # what Python does in such a callback
            (tmp_path / tmp / 'done.txt').write_text('done')
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------- --nproc


@pytest.fixture
def importable_converter(monkeypatch):
    """``load_converter`` with the module in ``sys.modules``, where a
    process pool looks up the functions it sends to its workers."""

    def load(name):
        module = load_converter(name)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        return module

    return load


def _oxford_pet_runs(tmp_path):
    src = tmp_path / 'downloads'
    make_oxford_pet_downloads(str(src))

    def run(nproc):
        out = tmp_path / f'nproc{nproc}'
        return [
            str(src / 'images.tar.gz'),
            str(src / 'annotations.tar.gz'), '-o',
            str(out)
        ], out

    return run


def _cityscapes_runs(tmp_path):
    src = tmp_path / 'cityscapes'
    make_cityscapes(str(src))

    def run(nproc):
        root = tmp_path / f'nproc{nproc}'
        shutil.copytree(src, root)
        return [str(root)], root / 'gtFine'

    return run


def _nyu_runs(tmp_path):
    src = make_nyu_downloads(str(tmp_path / 'downloads'))

    def run(nproc):
        out = tmp_path / f'nproc{nproc}'
        return [src['mat'], src['meta'], '-o', str(out)], out

    return run


@pytest.mark.parametrize('name, runs', [('oxford_pet', _oxford_pet_runs),
                                        ('cityscapes', _cityscapes_runs),
                                        ('nyu', _nyu_runs)])
def test_nproc_2_writes_what_nproc_1_writes(name, runs, tmp_path,
                                            monkeypatch, importable_converter):
    """The per-file work goes through mmengine's progress bars, in this
    process or in a pool of ``--nproc`` processes, with the same output."""
    converter = importable_converter(name)
    processes = []

    def progress(func, tasks):
        processes.append(1)
        return track_progress(func, tasks)

    def parallel_progress(func, tasks, nproc):
        processes.append(nproc)
        return track_parallel_progress(func, tasks, nproc)

    monkeypatch.setattr(converter, 'track_progress', progress)
    monkeypatch.setattr(converter, 'track_parallel_progress',
                        parallel_progress)
    run = runs(tmp_path)
    written = []
    for nproc in (1, 2):
        args, out = run(nproc)
        monkeypatch.setattr('sys.argv',
                            [f'{name}.py', *args, '--nproc',
                             str(nproc)])
        converter.main()
        written.append(_contents(out))
    assert processes == [1, 2]
    assert written[0] and written[0] == written[1]
    monkeypatch.setattr('sys.argv', [f'{name}.py', *args, '--nproc', '0'])
    with pytest.raises(SystemExit, match='nproc must be at least 1, got 0'):
        converter.main()


# ----------------------------------------------------------- damaged inputs


@pytest.mark.parametrize('member', [
    'images/Bengal_3.jpg', 'annotations/trimaps/beagle_7.png'
])
def test_oxford_pet_converter_decodes_every_file(member, tmp_path):
    """A file cut short inside a valid archive: its header, all that
    ``Image.open`` reads, is intact."""
    src = tmp_path / 'downloads'
    make_oxford_pet_downloads(str(src))
    _truncate(src / member)
    top = member.split('/')[0]
    with tarfile.open(src / f'{top}.tar.gz', 'w:gz') as tar:
        tar.add(src / top, arcname=top)
    with pytest.raises(ValueError,
                       match=rf'{re.escape(member)} \(.*(?i:truncated)'):
        oxford_pet.convert_oxford_pet(
            str(src / 'images.tar.gz'), str(src / 'annotations.tar.gz'),
            str(tmp_path / 'out' / 'oxford_pet'))
    assert os.listdir(tmp_path / 'out') == []


@pytest.mark.parametrize('meta_file', [
    'splits.mat', 'classMapping40.mat', 'class13Mapping.mat'
])
def test_nyu_converter_names_a_meta_file_cut_short(meta_file, tmp_path):
    """Cut anywhere, scipy raises IndexError, TypeError, OSError...: the
    file is named, with what to do. (Cut in the padding at its end, or after
    the variables the converter reads, it is read whole.)"""
    src = make_nyu_downloads(str(tmp_path / 'downloads'))

    def read_meta():
        to40, to13 = nyu.load_label_tables(src['meta'])
        splits = nyu.load_splits(src['meta'], len(src['frames']))
        return to40, to13, splits['train'], splits['test']

    whole = read_meta()
    path = osp.join(src['meta'], meta_file)
    with open(path, 'rb') as f:
        data = f.read()
    for size in np.linspace(0, len(data) - 1, 40).astype(int):
        with open(path, 'wb') as f:
            f.write(data[:size])
        try:
            meta = read_meta()
        except ValueError as err:
            assert path in str(err), (size, err)
            assert 'again' in str(err) or 'right file' in str(err), err
        else:
            assert all(map(np.array_equal, meta, whole)), size
    _truncate(path)
    with pytest.raises(ValueError, match=re.escape(path)):
        nyu.convert_nyu(src['mat'], src['meta'],
                        str(tmp_path / 'out' / 'nyu'))
    assert os.listdir(tmp_path / 'out') == []


def test_converter_refuses_a_split_list_without_images(tmp_path):
    src = tmp_path / 'downloads'
    make_oxford_pet_downloads(str(src))
    (src / 'annotations' / 'trainval.txt').write_text(PET_LIST_HEADER)
    with pytest.raises(ValueError,
                       match=r'annotations/trainval\.txt names no image'):
        oxford_pet.convert_oxford_pet(
            str(src / 'images'), str(src / 'annotations'),
            str(tmp_path / 'out' / 'oxford_pet'))
    assert os.listdir(tmp_path / 'out') == []


# ----------------------------------------------------------------- datasets


def _oxford_pet_test_set(root, **kwargs):
    return DATASETS.build(
        dict(
            type='OxfordPetDataset',
            data_root=root,
            ann_file='annotations/test.txt',
            **kwargs))


def _nyu_test_set(root, **kwargs):
    kwargs.setdefault('ann_file', 'test.txt')
    return DATASETS.build(
        dict(
            type='NYUv2SegDataset',
            data_root=root,
            data_prefix=dict(img_path='image/test', seg_map_path='label/test'),
            **kwargs))


def _shapes_val_set(root, **kwargs):
    return DATASETS.build(
        dict(
            type='LongTailShapesDataset',
            data_root=root,
            generation=TINY_SHAPES,
            data_prefix=dict(
                img_path='img_dir/val', seg_map_path='ann_dir/val'),
            **kwargs))


def test_empty_split_lists_are_named(oxford_pet_root, nyu_root, tmp_path):
    pet = tmp_path / 'oxford_pet'
    shutil.copytree(oxford_pet_root, pet)
    split_list = pet / 'annotations' / 'test.txt'
    split_list.write_text(PET_LIST_HEADER)
    with pytest.raises(ValueError, match=rf'{re.escape(str(split_list))}.* '
                       'names no image'):
        _oxford_pet_test_set(str(pet))
    nyu_data = tmp_path / 'nyu'
    shutil.copytree(nyu_root, nyu_data)
    (nyu_data / 'test.txt').write_text('')
    with pytest.raises(ValueError, match=r'split list .*test\.txt.* names no'):
        _nyu_test_set(str(nyu_data))
    for image in (nyu_data / 'image' / 'test').iterdir():
        image.unlink()
    with pytest.raises(ValueError,
                       match=r'image folder .*image/test. holds no \*\.png'):
        _nyu_test_set(str(nyu_data), ann_file='')


@pytest.mark.parametrize('make_set, root', [(_oxford_pet_test_set,
                                             'oxford_pet_root'),
                                            (_nyu_test_set, 'nyu_root'),
                                            (_shapes_val_set, 'shapes_root')])
@pytest.mark.parametrize('key', ['img_path', 'seg_map_path'])
def test_a_file_cut_short_is_named(make_set, root, key, tmp_path, request):
    """Pillow's "image file is truncated" names no file. (Images are decoded
    by Pillow here, as labels are; for OpenCV, the default for images,
    mmcv's own message names the file.)"""
    data_root = tmp_path / 'data'
    shutil.copytree(request.getfixturevalue(root), data_root)
    dataset = make_set(
        str(data_root),
        pipeline=[
            dict(type='LoadImageFromFile', imdecode_backend='pillow'),
            dict(type='LoadAnnotations')
        ])
    path = dataset.get_data_info(0)[key]
    _truncate(path)
    with pytest.raises(OSError, match=rf'truncated.*{re.escape(path)}'):
        dataset[0]
