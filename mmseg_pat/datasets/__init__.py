from . import transforms  # noqa: F401  (registration)
from .long_tail_shapes import (LongTailShapesDataset, class_probabilities,
                               generate_long_tail_shapes)

__all__ = [
    'LongTailShapesDataset', 'class_probabilities', 'generate_long_tail_shapes'
]
