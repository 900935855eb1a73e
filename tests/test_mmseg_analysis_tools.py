"""MMSeg's analysis tools (``mmseg/.mim/tools/analysis_tools``) on a tiny
run of this project's config, trained with MMSeg's own ``tools/train.py``
and evaluated with its ``tools/test.py --out``. Only ``--cfg-options``
shrink the config for a CPU run (``_shrink`` of ``test_mmseg_tools.py``).

MMSeg 1.2.2's tools have bugs of their own, which no config can avoid:

* ``confusion_matrix.py`` subtracts 1 from labels that ``LoadAnnotations``
  already reduced and reads the ``--out`` PNGs, which ``IoUMetric`` writes as
  class + 1, as they are (open-mmlab/mmsegmentation#1687), and sums the
  indices in uint8 (#3583: wrong for more than 16 classes). The test pins
  what it computes on correctly paired pixels: a wrong pairing of
  predictions and labels fails it.
* ``browse_dataset.py`` hands OpenCV a non-contiguous image (#3405, fix in
  #3566, unmerged): OpenCV 4.8 and 5 refuse to draw on it.
* ``get_flops.py`` passes both ``input_shape`` and ``inputs`` to MMEngine
  >= 0.7.3, which refuses (#3241; fixed by #3551, after 1.2.2).
* ``analyze_logs.py`` imports seaborn (not an MMSeg requirement) for
  ``set_style`` only.
* ``benchmark.py`` has no ``--cfg-options``, times 200 images (fewer give
  NaN) and preprocesses in training mode, which pads each image to
  ``data_preprocessor.size`` and then crops the logits by that padding.

Those tools run here with the upstream fix applied in the launching
process (``_launch``) or through a config file that includes the project's,
so that the test fails on the project's side of them only.
"""
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from conftest import PROJECT
from test_mmseg_tools import MMSEG_TOOLS, _shrink

ANALYSIS_TOOLS = osp.join(MMSEG_TOOLS, 'analysis_tools')
CONFIG = 'configs/pat/segformer_oxfordpet.py'
# The generated test split (Abyssinian_20, Bengal_3) is already in file-name
# order; the trainval list, like the official lists, is in case-insensitive
# breed order (Abyssinian, american_bulldog, Bengal, beagle), so evaluating
# on it tells a dataset in file-name order from one in split-list order.
SPLIT = 'annotations/trainval.txt'

# Fixes of MMSeg's tools, applied before the unchanged tool runs.
CONTIGUOUS_IMAGE = '''
import numpy as np
from mmseg.visualization import SegLocalVisualizer
draw = SegLocalVisualizer._draw_sem_seg
SegLocalVisualizer._draw_sem_seg = (
    lambda self, image, *args, **kwargs:
    draw(self, np.ascontiguousarray(image), *args, **kwargs))
'''
FLOPS_OF_INPUTS = '''
import mmengine.analysis as analysis
complexity = analysis.get_model_complexity_info
analysis.get_model_complexity_info = (
    lambda model, input_shape=None, inputs=None, **kwargs:
    complexity(model, None if inputs is not None else input_shape,
               inputs=inputs, **kwargs))
'''
NO_SEABORN = '''
import sys, types
sys.modules['seaborn'] = types.SimpleNamespace(set_style=lambda style: None)
'''


def _run(command):
    done = subprocess.run(command, cwd=PROJECT, capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS='1',
                                   MPLBACKEND='Agg'))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout + done.stderr


def _launch(tool, *args, fix=''):
    """Run ``analysis_tools/<tool>``, unchanged, after the code ``fix``."""
    script = osp.join(ANALYSIS_TOOLS, tool)
    if not fix:
        return _run([sys.executable, script, *args])
    code = (fix + 'import runpy, sys\nsys.argv = sys.argv[1:]\n'
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    return _run([sys.executable, '-c', code, script, *args])


def _options(data_root):
    return [
        *_shrink(data_root), 'default_hooks.logger.interval=1',
        f'test_dataloader.dataset.ann_file={SPLIT}',
        'test_dataloader.dataset.indices=None'
    ]


@pytest.fixture(scope='module')
def pet_run(tmp_path_factory, oxford_pet_root):
    """Train 2 iterations, then write the predictions of the 4 images of
    ``SPLIT`` with ``tools/test.py --out``."""
    root = tmp_path_factory.mktemp('analysis_tools')
    work_dir, predictions = str(root / 'work'), str(root / 'predictions')
    _run([sys.executable, osp.join(MMSEG_TOOLS, 'train.py'), CONFIG,
          '--work-dir', work_dir, '--cfg-options',
          *_options(oxford_pet_root)])
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    torch.load(checkpoint, weights_only=True)  # plain data
    _run([sys.executable, osp.join(MMSEG_TOOLS, 'test.py'), CONFIG,
          checkpoint, '--work-dir', work_dir, '--out', predictions,
          '--cfg-options', *_options(oxford_pet_root)])
    return dict(root=root, data_root=oxford_pet_root, work_dir=work_dir,
                checkpoint=checkpoint, predictions=predictions)


def _stem(path):
    return osp.splitext(osp.basename(path))[0]


def _mmseg_counts(truth):
    """What MMSeg 1.2.2's ``calculate_confusion_matrix`` makes of correctly
    paired pixels of a ``reduce_zero_label`` dataset with fewer than 17
    classes: a pixel of class g > 0 predicted as p is counted at the flat
    index n * (g - 1) + p + 1, n - 1 cells before its place, and class 0
    becomes the ignore index (#1687)."""
    n = len(truth)
    counts = np.zeros(n * n, truth.dtype)
    counts[1:n * n - n + 1] = truth.ravel()[n:]
    return counts.reshape(n, n)


def test_confusion_matrix_pairs_each_prediction_with_its_label(
        pet_run, monkeypatch):
    predictions = pet_run['predictions']
    names = sorted(os.listdir(predictions))
    assert len(names) == 4 and names != sorted(names, key=str.lower)

    # The matrix by file stem: trimaps hold class + 1, and so do the
    # predictions (IoUMetric's output_dir adds 1 for reduce_zero_label).
    truth = np.zeros((3, 3), np.int64)
    for name in names:
        label = np.array(
            Image.open(
                osp.join(pet_run['data_root'], 'annotations', 'trimaps',
                         name))).astype(np.int64) - 1
        pred = np.array(Image.open(osp.join(predictions,
                                            name))).astype(np.int64) - 1
        assert label.shape == pred.shape
        assert label.min() >= 0 and label.max() <= 2 and pred.max() <= 2
        truth += np.bincount(
            3 * label.ravel() + pred.ravel(), minlength=9).reshape(3, 3)

    # The tool's main(), as run from the command line, with its matrix
    # recorded on the way to the plot.
    spec = importlib.util.spec_from_file_location(
        'mmseg_confusion_matrix', osp.join(ANALYSIS_TOOLS,
                                           'confusion_matrix.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    seen = {}

    def calculate(dataset, results):
        # the tool pairs sorted(os.listdir(predictions)) with the dataset
        order = [
            _stem(dataset.get_data_info(i)['img_path'])
            for i in range(len(dataset))
        ]
        assert order == [_stem(name) for name in names], \
            'OxfordPetDataset is not in the order of the file names'
        seen['matrix'] = tool_calculate(dataset, results)
        return seen['matrix']

    tool_calculate = tool.calculate_confusion_matrix
    monkeypatch.setattr(tool, 'calculate_confusion_matrix', calculate)
    save_dir = str(pet_run['root'] / 'confusion_matrix')
    monkeypatch.setattr(sys, 'argv', [
        'confusion_matrix.py',
        osp.join(PROJECT, CONFIG), predictions, save_dir, '--cfg-options',
        *_options(pet_run['data_root'])
    ])
    tool.main()

    np.testing.assert_array_equal(seen['matrix'], _mmseg_counts(truth))
    assert osp.getsize(osp.join(save_dir, 'confusion_matrix.png')) > 0


def test_browse_dataset_draws_the_training_set(pet_run, tmp_path):
    out = str(tmp_path / 'browse')
    _launch('browse_dataset.py', CONFIG, '--output-dir', out, '--not-show',
            '--cfg-options', *_options(pet_run['data_root']),
            fix=CONTIGUOUS_IMAGE)
    names = sorted(os.listdir(out))
    assert names == sorted([
        'Abyssinian_1.jpg', 'american_bulldog_10.jpg', 'Bengal_105.jpg',
        'beagle_7.jpg'
    ])
    for name in names:
        width, height = Image.open(osp.join(out, name)).size
        assert 0 < width <= 64 and 0 < height <= 64  # the shrunk crops


def test_get_flops_counts_the_model():
    from mmseg.registry import MODELS
    out = _launch('get_flops.py', CONFIG, '--shape', '64', '64',
                  '--cfg-options', 'model.backbone.init_cfg=None',
                  fix=FLOPS_OF_INPUTS)
    assert 'Input shape: (64, 64)' in out
    flops = float(re.search(r'Flops: ([\d.]+)G', out).group(1))
    params = float(re.search(r'Params: ([\d.]+)M', out).group(1))
    cfg = Config.fromfile(osp.join(PROJECT, CONFIG))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    assert abs(params * 1e6 -
               sum(p.numel() for p in model.parameters())) <= 500
    assert 0.01 < flops < 1  # MiT-B0 on 64 x 64: about 0.1 GFLOPs


def test_analyze_logs_plots_the_run(pet_run, tmp_path):
    vis_data = [
        osp.join(root, name) for root, _, files in os.walk(
            pet_run['work_dir']) for name in files
        if osp.basename(root) == 'vis_data' and name[0].isdigit()
        and name.endswith('.json')
    ]
    assert len(vis_data) == 1
    keys = ['loss', 'decode.loss_pat', 'mIoU', 'tail_mIoU']
    out_file = str(tmp_path / 'curves.png')
    have_seaborn = importlib.util.find_spec('seaborn') is not None
    out = _launch('analyze_logs.py', vis_data[0], '--keys', *keys,
                  '--backend', 'agg', '--out', out_file,
                  fix='' if have_seaborn else NO_SEABORN)
    for key in keys:
        assert f'metric is {key}' in out
    width, height = Image.open(out_file).size
    assert width > 100 and height > 100


def test_benchmark_times_the_trained_model(pet_run, tmp_path):
    # A config that includes the project's (benchmark.py takes no
    # --cfg-options), with 200 test images (2 images, 100 times) and the
    # shrunk sizes.
    config = tmp_path / 'benchmark_config.py'
    config.write_text(
        f'_base_ = {osp.join(PROJECT, CONFIG)!r}\n'
        'model = dict(backbone=dict(init_cfg=None),\n'
        '             data_preprocessor=dict(size=(64, 64)))\n'
        'test_dataloader = dict(\n'
        '    num_workers=0, persistent_workers=False,\n'
        '    dataset=dict(_delete_=True, type="RepeatDataset", times=100,\n'
        '                 dataset=dict(type="OxfordPetDataset",\n'
        f'                              data_root={pet_run["data_root"]!r},\n'
        '                              ann_file="annotations/test.txt",\n'
        '                              pipeline=[\n'
        '        dict(type="LoadImageFromFile"),\n'
        '        dict(type="Resize", scale=(96, 96), keep_ratio=True),\n'
        '        dict(type="LoadAnnotations"),\n'
        '        dict(type="PackSegInputs")])))\n')
    work_dir = tmp_path / 'benchmark'
    out = _launch('benchmark.py', str(config), pet_run['checkpoint'],
                  '--work-dir', str(work_dir), '--log-interval', '100')
    assert 'Loads checkpoint by local backend' in out
    (result, ) = work_dir.glob('fps_*.json')
    fps = json.loads(result.read_text())
    assert fps['average_fps'] > 0
    assert fps['overall_fps_1'] == fps['average_fps']
