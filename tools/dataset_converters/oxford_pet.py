"""Lay out the Oxford-IIIT Pet downloads as ``OxfordPetDataset`` reads them.

Download ``images.tar.gz`` and ``annotations.tar.gz`` from
https://www.robots.ox.ac.uk/~vgg/data/pets/, then::

    python tools/dataset_converters/oxford_pet.py \\
        images.tar.gz annotations.tar.gz -o data/oxford_pet

Either input may also be the folder its archive extracts to (``images/``,
``annotations/``). The output keeps the archive's layout, limited to what
segmentation uses::

    images/<name>.jpg
    annotations/trimaps/<name>.png
    annotations/{list,trainval,test}.txt

Every image of ``trainval.txt`` and ``test.txt`` must be there with a trimap
of the same size; the rest of the archives (head boxes, macOS ``._*`` files,
unlisted images) is left out. The output is written to a temporary folder
next to it and renamed into place, so a failed run leaves nothing behind.
"""
import argparse
import os
import os.path as osp
import posixpath
import shutil
import sys
import tarfile
import tempfile
from typing import Iterator, List, Sequence, Tuple

from PIL import Image

from mmseg_pat.datasets.oxford_pet import split_names

SPLIT_LISTS = ('list.txt', 'trainval.txt', 'test.txt')
# Split lists whose images are converted (list.txt names the same images).
CONVERTED_SPLITS = ('trainval.txt', 'test.txt')


def _read_files(source: str, top: str,
                wanted: Sequence[str]) -> Iterator[Tuple[str, bytes]]:
    """Yield ``(path, content)`` of the ``wanted`` files found in ``source``.

    Args:
        source (str): A tar archive whose members are ``<top>/<path>``, or
            the folder ``<top>`` it extracts to.
        top (str): Top folder of the archive, ``'images'`` or
            ``'annotations'``.
        wanted (Sequence[str]): Paths relative to ``top``, with ``/``.

    Raises:
        FileNotFoundError: If ``source`` does not exist.
        ValueError: If ``source`` is a file but not a readable tar archive.
    """
    if osp.isdir(source):
        for path in wanted:
            file = osp.join(source, *path.split('/'))
            if osp.isfile(file):
                with open(file, 'rb') as f:
                    yield path, f.read()
        return
    if not osp.isfile(source):
        raise FileNotFoundError(
            f'{source!r} not found: give {top}.tar.gz from '
            'https://www.robots.ox.ac.uk/~vgg/data/pets/ or the folder it '
            'extracts to')
    wanted = set(wanted)
    try:
        with tarfile.open(source) as tar:
            for member in tar:
                path = posixpath.normpath(member.name)
                if not (member.isfile() and path.startswith(top + '/')):
                    continue
                rel = path[len(top) + 1:]
                if rel in wanted:
                    yield rel, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f'{source!r} is not a readable tar archive ({err}); '
                         'download it again') from err


def _check_image_pairs(out_dir: str, names: List[str]) -> None:
    """Check that every image has a trimap of its size; raise ValueError."""
    missing, bad = [], []
    for name in names:
        img = osp.join(out_dir, 'images', name + '.jpg')
        trimap = osp.join(out_dir, 'annotations', 'trimaps', name + '.png')
        if not (osp.isfile(img) and osp.isfile(trimap)):
            missing.append(name)
            continue
        try:
            with Image.open(img) as i, Image.open(trimap) as t:
                if i.size != t.size:
                    bad.append(f'{name} (image {i.size}, trimap {t.size})')
        except OSError as err:
            bad.append(f'{name} ({err})')
    if missing:
        raise ValueError(
            f'{len(missing)} listed images lack the image or the trimap, '
            f'e.g. {missing[:5]}; are the archives complete?')
    if bad:
        raise ValueError(f'{len(bad)} unreadable or mismatched image/trimap '
                         f'pairs, e.g. {bad[:5]}')


def convert_oxford_pet(images: str,
                       annotations: str,
                       out_dir: str,
                       overwrite: bool = False) -> List[str]:
    """Write the dataset under ``out_dir``.

    Args:
        images (str): ``images.tar.gz`` or the ``images/`` folder.
        annotations (str): ``annotations.tar.gz`` or the ``annotations/``
            folder.
        out_dir (str): Output folder, the dataset's ``data_root``.
        overwrite (bool): Replace an existing, non-empty ``out_dir``.
            Default: ``False``.

    Returns:
        list[str]: Names of the converted images (trainval, then test).

    Raises:
        FileNotFoundError: If an input is missing.
        FileExistsError: If ``out_dir`` is not empty and not ``overwrite``.
        ValueError: If an input is corrupt or incomplete.
    """
    if osp.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(
            f'{out_dir!r} is not empty; remove it or pass --overwrite')
    parent = osp.dirname(osp.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(
        prefix=f'.{osp.basename(osp.abspath(out_dir))}-', dir=parent)
    try:
        ann_dir = osp.join(tmp, 'annotations')
        os.makedirs(osp.join(ann_dir, 'trimaps'))
        os.makedirs(osp.join(tmp, 'images'))
        lists = dict(_read_files(annotations, 'annotations', SPLIT_LISTS))
        for list_name in SPLIT_LISTS:
            if list_name not in lists:
                raise ValueError(f'{annotations!r} has no '
                                 f'annotations/{list_name}')
            with open(osp.join(ann_dir, list_name), 'wb') as f:
                f.write(lists[list_name])
        names = [
            name for list_name in CONVERTED_SPLITS for name in split_names(
                lists[list_name].decode().splitlines())
        ]
        for top, source, folder, suffix in (
            ('annotations', annotations, 'trimaps/', '.png'),
            ('images', images, '', '.jpg'),
        ):
            wanted = [folder + name + suffix for name in names]
            for path, content in _read_files(source, top, wanted):
                with open(osp.join(tmp, top, *path.split('/')), 'wb') as f:
                    f.write(content)
        _check_image_pairs(tmp, names)
        if osp.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return names


def main() -> None:
    parser = argparse.ArgumentParser(
        description='Lay out the Oxford-IIIT Pet downloads for '
        'OxfordPetDataset.')
    parser.add_argument(
        'images', help='images.tar.gz or the images/ folder it extracts to')
    parser.add_argument(
        'annotations',
        help='annotations.tar.gz or the annotations/ folder it extracts to')
    parser.add_argument(
        '-o',
        '--out-dir',
        default='data/oxford_pet',
        help='output folder (default: data/oxford_pet)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace a non-empty output folder')
    args = parser.parse_args()
    try:
        names = convert_oxford_pet(args.images, args.annotations,
                                   args.out_dir, args.overwrite)
    except (OSError, ValueError) as err:
        sys.exit(f'error: {err}')
    print(f'{len(names)} images written to {args.out_dir}')


if __name__ == '__main__':
    main()
