from . import transforms  # noqa: F401  (registration)
from .class_statistics import (cached_class_counts,
                               cached_per_image_class_counts,
                               class_pixel_counts, label_file_paths,
                               label_files_key, per_image_class_counts,
                               save_class_counts)
from .long_tail_shapes import (LongTailShapesDataset, class_probabilities,
                               generate_long_tail_shapes)
from .nyu_seg import (NYU13_CLASSES, NYU40_CLASSES, NYUv2Seg40Dataset,
                      NYUv2SegDataset)
from .oxford_pet import OxfordPetDataset
from .rare_class_sampler import (RareClassSampler, qualifying_images,
                                 rare_class_probabilities)

__all__ = [
    'LongTailShapesDataset', 'class_probabilities',
    'generate_long_tail_shapes', 'NYU13_CLASSES', 'NYU40_CLASSES',
    'NYUv2SegDataset', 'NYUv2Seg40Dataset', 'OxfordPetDataset',
    'cached_class_counts', 'cached_per_image_class_counts',
    'class_pixel_counts', 'label_file_paths', 'label_files_key',
    'per_image_class_counts', 'save_class_counts', 'RareClassSampler',
    'qualifying_images', 'rare_class_probabilities'
]
