"""The Oxford-IIIT Pet dataset as 3-class segmentation of its trimaps.

O. M. Parkhi, A. Vedaldi, A. Zisserman, C. V. Jawahar, "Cats and Dogs",
CVPR 2012 (https://www.robots.ox.ac.uk/~vgg/data/pets/). The PAT paper
(arXiv 2404.05393) segments the trimaps into three classes: pet, background
and the border band between them.

The trimaps store 1 = pet, 2 = background, 3 = border, so the labels are the
trimap values minus one; ``reduce_zero_label`` does exactly that (and would
send a 0, which trimaps never contain, to the ignore index).
"""
import os.path as osp
from typing import Iterable, List, Optional

import mmengine
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from mmseg_pat.datasets.base import NameFilesInLoadErrorsMixin

_HOW_TO_GET = (
    'Download images.tar.gz and annotations.tar.gz from '
    'https://www.robots.ox.ac.uk/~vgg/data/pets/ and run '
    '`python tools/dataset_converters/oxford_pet.py images.tar.gz '
    'annotations.tar.gz -o <data_root>`.')


def split_names(lines: Iterable[str]) -> List[str]:
    """Image names of a split list of the official archive.

    The lists (``list.txt``, ``trainval.txt``, ``test.txt``) have one image
    per line, ``<name> <CLASS-ID> <SPECIES> <BREED-ID>``; ``#`` starts a
    comment line.

    Args:
        lines (Iterable[str]): Lines of the list.

    Returns:
        list[str]: The first column of every non-comment, non-blank line.
    """
    return [
        line.split()[0] for line in lines
        if line.strip() and not line.startswith('#')
    ]


@DATASETS.register_module()
class OxfordPetDataset(NameFilesInLoadErrorsMixin, BaseSegDataset):
    """Oxford-IIIT Pet trimaps as classes pet (0), background (1), border (2).

    The layout is the official archive's (as written by
    ``tools/dataset_converters/oxford_pet.py``)::

        data_root/
        ├── images/<name>.jpg
        └── annotations/
            ├── trimaps/<name>.png
            ├── trainval.txt
            └── test.txt

    Args:
        ann_file (str): Split list, relative to ``data_root``; only its first
            column (the image name) is read. Default:
            ``'annotations/trainval.txt'``.
        data_prefix (dict, optional): Image and trimap folders. Default:
            ``None``, i.e. ``dict(img_path='images',
            seg_map_path='annotations/trimaps')``.
        img_suffix (str): Suffix of the images. Default: ``'.jpg'``.
        seg_map_suffix (str): Suffix of the trimaps. Default: ``'.png'``.
        **kwargs: Passed to :class:`BaseSegDataset`, e.g. ``data_root``,
            ``pipeline``. ``reduce_zero_label`` is always on (see the module
            docstring).
    """

    METAINFO = dict(
        classes=('pet', 'background', 'border'),
        palette=[[220, 120, 60], [70, 70, 70], [250, 250, 250]])

    def __init__(self,
                 ann_file: str = 'annotations/trainval.txt',
                 data_prefix: Optional[dict] = None,
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 **kwargs) -> None:
        if data_prefix is None:
            data_prefix = dict(
                img_path='images', seg_map_path='annotations/trimaps')
        super().__init__(
            ann_file=ann_file,
            data_prefix=data_prefix,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=True,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """One entry per image of the split list ``ann_file``, by name.

        Raises:
            FileNotFoundError: If the data root, the split list or the image
                or trimap folder is missing.
            ValueError: If the split list names no image.
        """
        img_dir = self.data_prefix['img_path']
        seg_dir = self.data_prefix['seg_map_path']
        if self.data_root is not None and not osp.isdir(self.data_root):
            raise FileNotFoundError(
                f'Oxford-IIIT Pet data root {self.data_root!r} not found. '
                f'{_HOW_TO_GET}')
        for what, path, exists in (('split list', self.ann_file, osp.isfile),
                                   ('image folder', img_dir, osp.isdir),
                                   ('trimap folder', seg_dir, osp.isdir)):
            if not exists(path):
                raise FileNotFoundError(
                    f'Oxford-IIIT Pet {what} {path!r} not found. '
                    f'{_HOW_TO_GET}')
        names = split_names(
            mmengine.list_from_file(
                self.ann_file, backend_args=self.backend_args))
        if not names:
            raise ValueError(
                f'Oxford-IIIT Pet split list {self.ann_file!r} names no '
                f'image (only comment or blank lines). {_HOW_TO_GET}')
        return [
            dict(
                img_path=osp.join(img_dir, name + self.img_suffix),
                seg_map_path=osp.join(seg_dir, name + self.seg_map_suffix),
                label_map=self.label_map,
                reduce_zero_label=self.reduce_zero_label,
                seg_fields=[])
            # in the order of the file names, as MMSeg's folder scans give:
            # tools such as confusion_matrix.py pair the dataset with
            # sorted(os.listdir(predictions)) (named <image stem>.png)
            for name in sorted(names, key=lambda n: n + '.png')
        ]
