"""NYU Depth V2 (labeled set) as 13- or 40-class semantic segmentation.

N. Silberman, D. Hoiem, P. Kohli, R. Fergus, "Indoor Segmentation and Support
Inference from RGBD Images", ECCV 2012. MMSeg's ``NYUDataset`` reads its
depth maps; these datasets read semantic labels: the 13 classes of Couprie
et al. (ICLR 2013 workshop) and the 40 classes of Gupta et al. (CVPR 2013),
as mapped from the 894 raw classes by ``tools/dataset_converters/nyu.py``.

Label 0 is "unlabeled" in both encodings; ``reduce_zero_label`` sends it to
the ignore index and shifts the classes down by one.

The two class sets are two dataset types rather than an option of one, as
MMSeg does for ``PascalContextDataset`` / ``PascalContextDataset59``: MMSeg
reads the classes of a dataset type from its ``METAINFO`` (for
``metainfo=dict(classes=...)`` subsets, and in its analysis tools).
"""
import os.path as osp
from typing import List, Optional

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from mmseg_pat.datasets.base import NameFilesInLoadErrorsMixin

# As in class13Mapping.mat (alphabetical), labels 1..13.
NYU13_CLASSES = ('bed', 'books', 'ceiling', 'chair', 'floor', 'furniture',
                 'objects', 'picture', 'sofa', 'table', 'tv', 'wall',
                 'window')
# As in classMapping40.mat, labels 1..40; it spells 'refridgerator'.
NYU40_CLASSES = ('wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table',
                 'door', 'window', 'bookshelf', 'picture', 'counter',
                 'blinds', 'desk', 'shelves', 'curtain', 'dresser', 'pillow',
                 'mirror', 'floor mat', 'clothes', 'ceiling', 'books',
                 'refrigerator', 'television', 'paper', 'towel',
                 'shower curtain', 'box', 'whiteboard', 'person',
                 'night stand', 'toilet', 'sink', 'lamp', 'bathtub', 'bag',
                 'otherstructure', 'otherfurniture', 'otherprop')

_HOW_TO_GET = (
    'Convert the official nyu_depth_v2_labeled.mat with '
    '`python tools/dataset_converters/nyu.py nyu_depth_v2_labeled.mat '
    '<nyuv2-meta-data folder> -o <data_root>` (see its docstring).')


@DATASETS.register_module()
class NYUv2SegDataset(NameFilesInLoadErrorsMixin, BaseSegDataset):
    """NYUv2 labeled set, 13 classes; unlabeled pixels are ignored.

    The layout, as written by ``tools/dataset_converters/nyu.py``::

        data_root/
        ├── image/{train,test}/<idx>.png     RGB, 640 x 480
        ├── label/{train,test}/<idx>.png     0 = unlabeled, 1..13
        ├── label40/{train,test}/<idx>.png   0 = unlabeled, 1..40
        └── {train,test}.txt                 stems, optional

    where ``<idx>`` is the 1-based, 4-digit index of the frame in
    ``nyu_depth_v2_labeled.mat``.

    Args:
        data_prefix (dict, optional): Image and label folders. Default:
            ``None``, i.e. the train split, ``dict(img_path='image/train',
            seg_map_path='label/train')`` (``label40/train`` for
            :class:`NYUv2Seg40Dataset`).
        img_suffix (str): Suffix of the images. Default: ``'.png'``.
        seg_map_suffix (str): Suffix of the labels. Default: ``'.png'``.
        **kwargs: Passed to :class:`BaseSegDataset`, e.g. ``data_root``,
            ``ann_file`` (``'test.txt'``; default ``''``: every image of the
            folder), ``pipeline``. ``reduce_zero_label`` is always on.
    """

    METAINFO = dict(classes=NYU13_CLASSES)
    # Folder of the labels of METAINFO's classes, as the converter names it.
    LABEL_DIR = 'label'

    def __init__(self,
                 data_prefix: Optional[dict] = None,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 **kwargs) -> None:
        if data_prefix is None:
            data_prefix = dict(
                img_path='image/train', seg_map_path=f'{self.LABEL_DIR}/train')
        super().__init__(
            data_prefix=data_prefix,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=True,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Load the data list after checking that its folders exist.

        Raises:
            FileNotFoundError: If the data root, the split list (when
                given) or the image or label folder is missing.
            ValueError: If the split list, or without one the image folder,
                names no image.
        """
        if self.data_root is not None and not osp.isdir(self.data_root):
            raise FileNotFoundError(
                f'NYUv2 data root {self.data_root!r} not found. {_HOW_TO_GET}')
        checks = [('image folder', self.data_prefix['img_path'], osp.isdir),
                  ('label folder', self.data_prefix['seg_map_path'],
                   osp.isdir)]
        if self.ann_file:
            checks.append(('split list', self.ann_file, osp.isfile))
        for what, path, exists in checks:
            if not exists(path):
                raise FileNotFoundError(
                    f'NYUv2 {what} {path!r} not found. {_HOW_TO_GET}')
        data_list = super().load_data_list()
        if not data_list:
            if self.ann_file:
                problem = f'split list {self.ann_file!r} names no image'
            else:
                problem = (f'image folder {self.data_prefix["img_path"]!r} '
                           f'holds no *{self.img_suffix} image')
            raise ValueError(f'NYUv2 {problem}. {_HOW_TO_GET}')
        return data_list


@DATASETS.register_module()
class NYUv2Seg40Dataset(NYUv2SegDataset):
    """NYUv2 labeled set, 40 classes; unlabeled pixels are ignored.

    Same layout and arguments as :class:`NYUv2SegDataset`, with the labels
    read from ``label40/`` by default.
    """

    METAINFO = dict(classes=NYU40_CLASSES)
    LABEL_DIR = 'label40'
