from . import transforms  # noqa: F401  (registration)
from .class_statistics import (FREQUENCY_GROUPS, FROM_TRAIN_SET,
                               check_num_classes, class_pixel_counts,
                               frequency_groups, load_class_counts,
                               log_class_prior, resolve_class_counts,
                               save_class_counts)
from .long_tail_shapes import (LongTailShapesDataset, class_probabilities,
                               generate_long_tail_shapes)
from .nyu_seg import (NYU13_CLASSES, NYU40_CLASSES, NYUv2Seg40Dataset,
                      NYUv2SegDataset)
from .oxford_pet import OxfordPetDataset

__all__ = [
    'LongTailShapesDataset', 'class_probabilities',
    'generate_long_tail_shapes', 'NYU13_CLASSES', 'NYU40_CLASSES',
    'NYUv2SegDataset', 'NYUv2Seg40Dataset', 'OxfordPetDataset',
    'FREQUENCY_GROUPS', 'check_num_classes', 'class_pixel_counts',
    'frequency_groups', 'load_class_counts', 'log_class_prior',
    'save_class_counts', 'FROM_TRAIN_SET', 'resolve_class_counts'
]
