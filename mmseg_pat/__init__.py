"""PAT (Pixel-wise Adaptive Training, arXiv 2404.05393) for MMSegmentation.

Importing the package checks the OpenMMLab stack (upstream OpenMMLab or
the OneDL fork, :mod:`mmseg_pat.stack`), registers its modules into MMSeg's
registries, and does nothing else, so a config needs only
``custom_imports = dict(imports=['mmseg_pat'])``.
"""
from .stack import check_stack, load_config

STACK = check_stack()

from . import (datasets, engine, evaluation, models,  # noqa: E402,F401
               visualization)
from .version import __version__  # noqa: E402

__all__ = ['STACK', '__version__', 'load_config']
