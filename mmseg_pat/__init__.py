"""PAT (Pixel-wise Adaptive Training, arXiv 2404.05393) for MMSegmentation.

Importing the package registers its modules into MMSeg's registries, so a
config needs only ``custom_imports = dict(imports=['mmseg_pat'])``.
"""
from . import datasets, engine, evaluation, models  # noqa: F401
from .utils import allow_mmengine_checkpoints
from .version import __version__

allow_mmengine_checkpoints()

__all__ = ['__version__']
