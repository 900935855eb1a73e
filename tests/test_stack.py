"""Both OpenMMLab stacks: upstream OpenMMLab and the OneDL fork.

What installs (setup.cfg's extras), what ``import mmseg_pat`` checks and
says, that it changes nothing global, and the one bridge config loading
needs on the fork (``mmseg::`` bases), through this project's loader and
through MMSeg's own tools.
"""
import configparser
import os
import os.path as osp
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.config import utils as config_utils
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from mmseg_pat import STACK, load_config, stack
from mmseg_pat.visualization import AnyLayoutSegLocalVisualizer

from conftest import PROJECT, mmseg_tool

PAT_CONFIG = osp.join(PROJECT, 'configs/pat/segformer_oxfordpet.py')


def _requirements(text):
    return sorted(line.strip() for line in text.strip().splitlines()
                  if line.strip() and not line.strip().startswith('#'))


def test_extras_are_the_supported_ranges():
    """One extra per stack, with the ranges the import check accepts; the
    plain requirements name neither family."""
    setup = configparser.ConfigParser()
    setup.read(osp.join(PROJECT, 'setup.cfg'))
    extras = setup['options.extras_require']
    for name, modules in stack.SUPPORTED.items():
        assert _requirements(extras[name]) == sorted(
            f'{distribution}{versions}'
            for distribution, versions in modules.values())
    openmmlab = {d for m in stack.SUPPORTED.values() for d, _ in m.values()}
    plain = _requirements(setup['options']['install_requires'])
    assert not openmmlab & {r.split('>')[0].split('=')[0] for r in plain}


def test_the_installed_stack_is_one_family():
    assert STACK in stack.SUPPORTED
    for module in stack.MODULES:
        provider, = stack.providers(module)
        assert provider.stack == STACK


@pytest.fixture
def installed(monkeypatch):
    """Pretend that the distributions of a dict {name: version} are all
    that is installed (with or without mmcv's compiled ops)."""
    def install(versions, ops=True):
        monkeypatch.setattr(stack, '_version', versions.get)
        monkeypatch.setattr(
            stack, '_module_found',
            lambda name: ops if name == 'mmcv._ext' else False)
    return install


UPSTREAM = {'mmcv': '2.1.0', 'mmengine': '0.10.7', 'mmsegmentation': '1.2.2'}
ONEDL = {'onedl-mmcv': '2.3.6', 'onedl-mmengine': '0.10.12',
         'onedl-mmsegmentation': '1.4.2'}


@pytest.mark.parametrize('versions,expected', [(UPSTREAM, 'openmmlab'),
                                               (ONEDL, 'onedl')])
def test_each_stack_is_recognised(installed, versions, expected):
    installed(versions)
    assert stack.check_stack() == expected


@pytest.mark.parametrize('versions,message', [
    ({}, 'mmcv is not installed'),
    ({**UPSTREAM, 'onedl-mmcv': '2.3.6'},
     'mmcv 2.1.0, onedl-mmcv 2.3.6 are all installed and write the same '
     'mmcv/ folder'),
    ({**UPSTREAM, 'mmsegmentation': '0.30.0'},
     r'mmsegmentation 0.30.0 is installed; this version of mmseg-pat '
     r'supports mmsegmentation>=1.0.0,<2.0.0'),
    ({**UPSTREAM, 'mmcv': '2.2.0'}, 'supports mmcv>=2.0.0rc4,<2.2.0'),
    ({**ONEDL, 'onedl-mmsegmentation': '1.3.3'},
     'supports onedl-mmsegmentation>=1.4.0,<2.0.0'),
    ({'mmcv': '2.1.0', 'onedl-mmengine': '0.10.12',
      'mmsegmentation': '1.2.2'}, 'a mix of both families'),
])
def test_unsupported_stacks_name_both_install_lines(installed, versions,
                                                    message):
    installed(versions)
    with pytest.raises(ImportError, match=message) as error:
        stack.check_stack()
    assert 'pip install "mmseg-pat[openmmlab]"' in str(error.value)
    assert 'pip install "mmseg-pat[onedl]"' in str(error.value)


def test_onedl_mmcv_without_ops_is_named(installed):
    """The fork's mmseg imports without mmcv.ops (upstream's refuses), so
    the import says what a build in pip's isolation left out."""
    installed(ONEDL, ops=False)
    with pytest.warns(UserWarning, match='--no-build-isolation onedl-mmcv'):
        assert stack.check_stack() == 'onedl'


def test_import_changes_nothing_global():
    """MMEngine's scope table, config loader and checkpoint loaders, and
    torch.load, are the same objects with the same contents after
    ``import mmseg_pat`` as before."""
    code = textwrap.dedent('''
        import torch
        from mmengine.config import Config
        from mmengine.config import utils
        from mmengine.runner.checkpoint import CheckpointLoader
        def state():
            return (dict(utils.MODULE2PACKAGE), Config.fromfile,
                    Config._get_cfg_path, torch.load,
                    dict(CheckpointLoader._schemes))
        before = state()
        import mmseg_pat
        assert state() == before, (before, state())
        print('unchanged')
    ''')
    done = subprocess.run([sys.executable, '-c', code], cwd=PROJECT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'unchanged' in done.stdout


def test_load_config_restores_mmengine_scope_table(tmp_path):
    before = dict(config_utils.MODULE2PACKAGE)
    assert load_config(PAT_CONFIG).model.decode_head.loss_decode.type == (
        'PATLoss')
    assert config_utils.MODULE2PACKAGE == before
    broken = tmp_path / 'broken.py'
    broken.write_text("_base_ = ['mmseg::_base_/no_such_base.py']\n")
    with pytest.raises(FileNotFoundError):
        load_config(str(broken))
    assert config_utils.MODULE2PACKAGE == before


def test_mmengine_alone_reads_mmseg_bases_only_upstream():
    """The difference load_config bridges. Should the fork's MMEngine learn
    to find its MMSeg, this fails: then the bridge and the README's "Which
    OpenMMLab?" limits can go."""
    if STACK == 'openmmlab':
        assert Config.fromfile(PAT_CONFIG).model.decode_head.type == (
            'SegformerHead')
    else:
        with pytest.raises(ModuleNotFoundError,
                           match='mmsegmentation is not installed'):
            Config.fromfile(PAT_CONFIG)


def test_visualizer_draws_on_any_image_layout(tmp_path):
    """The image MMSeg's browse_dataset.py draws, a view of a CHW tensor
    with its channels reversed, is drawn as MMSeg draws a contiguous copy
    (MMSeg 1.2.2's SegLocalVisualizer fails on the view inside cv2)."""
    chw = torch.randint(0, 255, (3, 40, 32), dtype=torch.uint8)
    image = chw.permute(1, 2, 0).numpy()[..., [2, 1, 0]]
    assert not image.flags.c_contiguous
    label = torch.zeros(1, 40, 32, dtype=torch.long)
    label[0, 5:30, 4:20] = 1
    sample = SegDataSample(gt_sem_seg=PixelData(data=label))
    drawn = []
    for kind, picture in [(AnyLayoutSegLocalVisualizer, image),
                          (SegLocalVisualizer, np.ascontiguousarray(image))]:
        visualizer = kind(name=f'{kind.__name__}_{tmp_path.name}')
        visualizer.dataset_meta = dict(
            classes=('background', 'cat'), palette=[[0, 0, 0], [255, 0, 0]])
        visualizer.add_datasample(
            'sample', picture, sample, draw_pred=False, show=False)
        drawn.append(visualizer.get_image())
    assert drawn[0].shape == (40, 32, 3)
    assert np.array_equal(drawn[0], drawn[1])


def test_mmseg_browse_dataset_draws_a_project_config(tmp_path):
    """MMSeg's own tools/analysis_tools/browse_dataset.py on the demo's PAT
    config (its data generated on first use): unchanged upstream, through
    ``python -m mmseg_pat.run`` on the fork."""
    out = tmp_path / 'browse'
    done = subprocess.run(
        [*mmseg_tool('analysis_tools/browse_dataset.py'),
         'configs/demo/segformer_long_tail_shapes_pat.py', '--not-show',
         '--output-dir', str(out), '--cfg-options',
         f'train_dataloader.dataset.data_root={tmp_path / "shapes"}',
         'train_dataloader.dataset.generation.num_train=6',
         'train_dataloader.dataset.generation.num_val=2'],
        cwd=PROJECT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, MPLBACKEND='Agg'))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert len(os.listdir(out)) == 6


def test_run_names_missing_scripts():
    done = subprocess.run(
        [sys.executable, '-m', 'mmseg_pat.run', 'mmseg::tools/no_such.py'],
        cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert 'no such script' in done.stderr and '.mim' in done.stderr
