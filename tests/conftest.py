import os.path as osp

import pytest
from mmseg.utils import register_all_modules

import mmseg_pat  # noqa: F401  (registers the project's modules)

# Unscoped type names (LoadAnnotations, ...) resolve to MMSeg's, as in a
# config with default_scope = 'mmseg'.
register_all_modules(init_default_scope=True)

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(osp.dirname(PROJECT), 'shared', 'data')

# A small generated dataset: fast to make and to train on.
TINY_SHAPES = dict(
    num_train=12,
    num_val=4,
    image_size=(32, 32),
    imbalance_ratio=20.0,
    num_shape_classes=3,
    seed=1)


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    """Root of a tiny generated LongTailShapesDataset (4 classes)."""
    from mmseg_pat.datasets import generate_long_tail_shapes
    root = str(tmp_path_factory.mktemp('data') / 'shapes')
    generate_long_tail_shapes(root, **TINY_SHAPES)
    return root
