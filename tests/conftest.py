"""Fixtures shared by the tests, and the two layers of dataset files.

1. Generated files (always there): tiny Oxford-IIIT Pet, Cityscapes and
   NYUv2 downloads in their official layouts (``fake_datasets.py``), made
   into data roots by the project's converters once per session. Every
   format, converter and config is tested on them.
2. The real dataset samples: tests marked
   ``@pytest.mark.real_samples('oxford_pet', ...)`` also read real files,
   from the folder named by ``MMSEG_PAT_SAMPLES`` (default: ``shared/data``
   beside the project, where this project's CI keeps them), which holds
   ``oxford_pet/``, ``cityscapes/`` and ``nyu/``. Without it they are
   skipped with one reason, counted at the end of the run;
   ``MMSEG_PAT_REQUIRE_SAMPLES=1`` makes a missing sample a failure.
"""
import os
import os.path as osp
import sys

import mmseg
import pytest
from mmseg.utils import register_all_modules

from mmseg_pat import STACK  # (importing registers the project's modules)

from fake_datasets import (load_converter, make_cityscapes, make_nyu_downloads,
                           make_oxford_pet_downloads)

# Unscoped type names (LoadAnnotations, ...) resolve to MMSeg's, as in a
# config with default_scope = 'mmseg'.
register_all_modules(init_default_scope=True)

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SAMPLES = osp.abspath(
    os.environ.get('MMSEG_PAT_SAMPLES')
    or osp.join(osp.dirname(PROJECT), 'shared', 'data'))
REQUIRE_SAMPLES = os.environ.get('MMSEG_PAT_REQUIRE_SAMPLES') == '1'
SAMPLE_NAMES = ('oxford_pet', 'cityscapes', 'nyu')
_SAMPLE_TESTS_RUN = pytest.StashKey[int]()
SAMPLES_SKIP_REASON = (
    f'real dataset samples not found in {SAMPLES}; set '
    'MMSEG_PAT_SAMPLES=DIR (a folder with oxford_pet/, cityscapes/, nyu/)')


def mmseg_tool(script):
    """The command that runs MMSeg's own ``tools/<script>`` on this
    project's configs: unchanged upstream; on the OneDL fork through
    ``python -m mmseg_pat.run``, with which its MMEngine finds the configs'
    ``mmseg::`` bases (a difference between the stacks:
    mmseg_pat.stack.mmseg_bases_resolvable)."""
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', script)
    if STACK == 'onedl':
        return [sys.executable, '-m', 'mmseg_pat.run', path]
    return [sys.executable, path]


# A small generated dataset: fast to make and to train on.
TINY_SHAPES = dict(
    num_train=12,
    num_val=4,
    image_size=(32, 32),
    imbalance_ratio=20.0,
    num_shape_classes=3,
    seed=1)


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'real_samples(*names): reads the real dataset samples '
        '<names> (oxford_pet, cityscapes, nyu) in $MMSEG_PAT_SAMPLES; '
        'skipped without them, failed with MMSEG_PAT_REQUIRE_SAMPLES=1')
    config.stash[_SAMPLE_TESTS_RUN] = 0


def _missing_samples(item):
    """Names of the samples a ``real_samples`` test needs that are not
    there; None for a test without the marker."""
    marker = item.get_closest_marker('real_samples')
    if marker is None:
        return None
    unknown = [name for name in marker.args if name not in SAMPLE_NAMES]
    if not marker.args or unknown:
        raise pytest.UsageError(
            f'{item.nodeid}: real_samples takes names from {SAMPLE_NAMES}, '
            f'got {marker.args}')
    return [
        name for name in marker.args
        if not osp.isdir(osp.join(SAMPLES, name))
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    missing = _missing_samples(item)
    if missing and not REQUIRE_SAMPLES:
        pytest.skip(SAMPLES_SKIP_REASON)
    if missing == []:
        item.config.stash[_SAMPLE_TESTS_RUN] += 1


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    missing = _missing_samples(item)
    if missing and REQUIRE_SAMPLES:
        pytest.fail(
            f'MMSEG_PAT_REQUIRE_SAMPLES=1 and the real samples {missing} '
            f'are not in {SAMPLES} (MMSEG_PAT_SAMPLES)',
            pytrace=False)


def pytest_terminal_summary(terminalreporter, config):
    skipped = [
        report for report in terminalreporter.stats.get('skipped', [])
        if SAMPLES_SKIP_REASON in str(report.longrepr)
    ]
    if skipped:
        missing = [
            name for name in SAMPLE_NAMES
            if not osp.isdir(osp.join(SAMPLES, name))
        ]
        terminalreporter.write_sep('=', 'real dataset samples', yellow=True)
        terminalreporter.write_line(
            f'{len(skipped)} tests skipped: {", ".join(missing)} not found '
            f'in {SAMPLES}. They check the datasets, converters and class '
            'counts on real files (every format is also tested on '
            'generated files). To run them, set MMSEG_PAT_SAMPLES=DIR, a '
            'folder with oxford_pet/, cityscapes/ and nyu/; '
            'MMSEG_PAT_REQUIRE_SAMPLES=1 makes a missing sample a failure.')
    elif config.stash[_SAMPLE_TESTS_RUN]:
        terminalreporter.write_line(
            f'real dataset samples: {config.stash[_SAMPLE_TESTS_RUN]} tests '
            f'ran on {SAMPLES}')


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    """Root of a tiny generated LongTailShapesDataset (4 classes)."""
    from mmseg_pat.datasets import generate_long_tail_shapes
    root = str(tmp_path_factory.mktemp('data') / 'shapes')
    generate_long_tail_shapes(root, **TINY_SHAPES)
    return root


@pytest.fixture(scope='session')
def oxford_pet_root(tmp_path_factory):
    """Oxford-IIIT Pet data root, converted from generated archives."""
    downloads = str(tmp_path_factory.mktemp('downloads') / 'oxford_pet')
    make_oxford_pet_downloads(downloads)
    root = str(tmp_path_factory.mktemp('data') / 'oxford_pet')
    load_converter('oxford_pet').convert_oxford_pet(
        osp.join(downloads, 'images.tar.gz'),
        osp.join(downloads, 'annotations.tar.gz'), root)
    return root


@pytest.fixture(scope='session')
def cityscapes_root(tmp_path_factory):
    """Cityscapes data root: generated frames and labelIds, with the
    labelTrainIds written by the converter."""
    root = str(tmp_path_factory.mktemp('data') / 'cityscapes')
    make_cityscapes(root)
    load_converter('cityscapes').convert_cityscapes(osp.join(root, 'gtFine'))
    return root


@pytest.fixture(scope='session')
def nyu_root(tmp_path_factory):
    """NYUv2 data root (train and test splits), converted from a generated
    labeled .mat file and meta files."""
    downloads = make_nyu_downloads(
        str(tmp_path_factory.mktemp('downloads') / 'nyu'))
    root = str(tmp_path_factory.mktemp('data') / 'nyu')
    load_converter('nyu').convert_nyu(downloads['mat'], downloads['meta'],
                                      root)
    return root


def _generated_or_real(sample):
    """A fixture, ``<sample>_data``, that gives the generated data root
    (``<sample>_root``) and then the real sample's folder."""

    @pytest.fixture(
        name=f'{sample}_data',
        params=[
            'generated',
            pytest.param('real', marks=pytest.mark.real_samples(sample))
        ])
    def data_root(request):
        if request.param == 'real':
            return osp.join(SAMPLES, sample)
        return request.getfixturevalue(f'{sample}_root')

    return data_root


oxford_pet_data = _generated_or_real('oxford_pet')
cityscapes_data = _generated_or_real('cityscapes')
nyu_data = _generated_or_real('nyu')
