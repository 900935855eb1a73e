"""PAT (Pixel-wise Adaptive Training, arXiv 2404.05393) for MMSegmentation.

Importing the package registers its modules into MMSeg's registries (and
does nothing else), so a config needs only
``custom_imports = dict(imports=['mmseg_pat'])``.
"""
from . import datasets, engine, evaluation, models  # noqa: F401
from .version import __version__

__all__ = ['__version__']
