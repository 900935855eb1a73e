"""Make Cityscapes' ``*_labelTrainIds.png`` for MMSeg's CityscapesDataset.

MMSeg's ``CityscapesDataset`` reads
``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` (19 classes, 255 =
ignore), which the official ``gtFine_trainvaltest.zip`` does not contain.
MMSeg's own converter renders them from the ``*_polygons.json`` files with
``cityscapesscripts`` (``pip install cityscapesscripts``, then
``csCreateTrainIdLabelImgs``). This one needs no extra package: it maps the
shipped ``*_gtFine_labelIds.png`` through the standard label id -> train id
table of ``cityscapesscripts/helpers/labels.py``. The two agree except on
some polygon edges (about 0.5% of the pixels).

Usage (after unzipping ``gtFine_trainvaltest.zip`` and
``leftImg8bit_trainvaltest.zip`` into ``data/cityscapes``)::

    python tools/dataset_converters/cityscapes.py data/cityscapes

``--nproc N`` converts with N processes. Every ``*_labelTrainIds.png`` is
first written to a temporary folder next to the ground-truth folder and moved
next to its ``*_labelIds.png`` only once all of them are made, so a failed or
interrupted run (Ctrl-C, SIGTERM) changes nothing.
"""
import argparse
import os
import os.path as osp
import sys
from functools import partial
from typing import List, Optional, Tuple

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image

from mmseg_pat.utils.atomic import temporary_folder

LABEL_IDS_SUFFIX = '_gtFine_labelIds.png'
TRAIN_IDS_SUFFIX = '_gtFine_labelTrainIds.png'
IGNORE_INDEX = 255
# Label id -> train id of the 19 evaluated classes (road, sidewalk, ...,
# bicycle); every other id (void, and classes not evaluated) is ignored.
ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18
}
_TRAIN_ID_LUT = np.full(256, IGNORE_INDEX, np.uint8)
_TRAIN_ID_LUT[list(ID_TO_TRAIN_ID)] = list(ID_TO_TRAIN_ID.values())


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a ``labelIds`` map (H, W) uint8 to train ids (H, W) uint8.

    Args:
        label_ids (np.ndarray): Cityscapes label ids.

    Returns:
        np.ndarray: Train ids 0..18, ``IGNORE_INDEX`` elsewhere.
    """
    if label_ids.ndim != 2 or label_ids.dtype != np.uint8:
        raise ValueError('label ids must be a 2-D uint8 map, got '
                         f'{label_ids.ndim}-D {label_ids.dtype}')
    return _TRAIN_ID_LUT[label_ids]


def _convert_label(gt_dir: str, out_dir: str,
                   files: Tuple[str, str]) -> Optional[str]:
    """Write the train ids of one ``*_labelIds.png``; say what is wrong with
    it, or None.

    Args:
        gt_dir (str): Ground-truth folder.
        out_dir (str): Output folder, with the city folders made.
        files (tuple[str, str]): The ``*_labelIds.png`` and the
            ``*_labelTrainIds.png`` to write, relative to the folders.
    """
    src, dst = files
    try:
        with Image.open(osp.join(gt_dir, src)) as img:
            train_ids = label_ids_to_train_ids(np.asarray(img))
    except (OSError, ValueError) as err:
        return f'{osp.join(gt_dir, src)!r}: {err}'
    Image.fromarray(train_ids).save(osp.join(out_dir, dst))
    return None


def convert_cityscapes(gt_dir: str, nproc: int = 1) -> List[str]:
    """Write ``*_labelTrainIds.png`` next to every ``*_labelIds.png``.

    Existing ``*_labelTrainIds.png`` are replaced.

    Args:
        gt_dir (str): Ground-truth folder, e.g. ``data/cityscapes/gtFine``.
        nproc (int): Number of processes that convert. Default: 1 (this
            process).

    Returns:
        list[str]: The written files, relative to ``gt_dir``.

    Raises:
        FileNotFoundError: If ``gt_dir`` holds no ``*_labelIds.png``.
        ValueError: If a ``*_labelIds.png`` is unreadable or not a
            single-channel 8-bit map.
    """
    if nproc < 1:
        raise ValueError(f'nproc must be at least 1, got {nproc}')
    sources = sorted(
        osp.relpath(osp.join(root, file), gt_dir)
        for root, _, files in os.walk(gt_dir) for file in files
        if file.endswith(LABEL_IDS_SUFFIX))
    if not sources:
        raise FileNotFoundError(
            f'no *{LABEL_IDS_SUFFIX} under {gt_dir!r}; unzip '
            'gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com '
            'there')
    targets = [
        src[:-len(LABEL_IDS_SUFFIX)] + TRAIN_IDS_SUFFIX for src in sources
    ]
    with temporary_folder(gt_dir) as tmp:
        for folder in sorted({osp.dirname(dst) for dst in targets}):
            os.makedirs(osp.join(tmp, folder), exist_ok=True)
        print(f'Converting {len(sources)} *{LABEL_IDS_SUFFIX} in {gt_dir}')
        convert = partial(_convert_label, gt_dir, tmp)
        tasks = list(zip(sources, targets))
        if nproc == 1:
            problems = track_progress(convert, tasks)
        else:
            problems = track_parallel_progress(convert, tasks, nproc)
        bad = [problem for problem in problems if problem]
        if bad:
            raise ValueError(f'{len(bad)} of {len(sources)} label maps cannot '
                             f'be converted, e.g. {"; ".join(bad[:5])}')
        for dst in targets:
            os.replace(osp.join(tmp, dst), osp.join(gt_dir, dst))
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(
        description='Make Cityscapes *_labelTrainIds.png from '
        '*_labelIds.png for MMSeg\'s CityscapesDataset.')
    parser.add_argument(
        'cityscapes_path', help='Cityscapes folder, e.g. data/cityscapes')
    parser.add_argument(
        '--gt-dir',
        default='gtFine',
        help='ground-truth folder in cityscapes_path (default: gtFine)')
    parser.add_argument(
        '--nproc',
        type=int,
        default=min(4, os.cpu_count() or 1),
        help='number of processes that convert (default: the CPU count, '
        'at most 4)')
    args = parser.parse_args()
    try:
        targets = convert_cityscapes(
            osp.join(args.cityscapes_path, args.gt_dir), args.nproc)
    except (OSError, ValueError) as err:
        sys.exit(f'error: {err}')
    print(f'{len(targets)} *{TRAIN_IDS_SUFFIX} written')


if __name__ == '__main__':
    main()
