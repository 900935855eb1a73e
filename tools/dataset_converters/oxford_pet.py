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
of the same size, and both must decode whole; the rest of the archives (head
boxes, macOS ``._*`` files, unlisted images) is left out. ``--nproc N``
decodes with N processes. The output is written to a temporary folder next
to it and renamed into place, so a failed or interrupted run (Ctrl-C,
SIGTERM) leaves nothing behind.
"""
import argparse
import os
import os.path as osp
import posixpath
import sys
import tarfile
from functools import partial
from typing import Iterator, List, Optional, Sequence, Tuple

from mmengine.utils import (track_iter_progress, track_parallel_progress,
                            track_progress)
from PIL import Image

from mmseg_pat.datasets.oxford_pet import split_names
from mmseg_pat.utils.atomic import atomic_folder

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


def _pair_members(name: str) -> Tuple[str, str]:
    """The image ``name`` and its trimap as members of the archives."""
    return f'images/{name}.jpg', f'annotations/trimaps/{name}.png'


def _decode_pair(out_dir: str, name: str) -> Optional[str]:
    """Decode the image ``name`` and its trimap whole (a file cut short can
    have an intact header); say what is wrong with them, or None."""
    sizes = []
    for member in _pair_members(name):
        try:
            with Image.open(osp.join(out_dir, *member.split('/'))) as img:
                img.load()
                sizes.append(img.size)
        # Pillow raises SyntaxError for a damaged PNG chunk.
        except (OSError, SyntaxError) as err:
            return f'{member} ({err})'
    image, trimap = sizes
    if image != trimap:
        return f'{name} (image {image}, trimap {trimap})'
    return None


def _check_image_pairs(out_dir: str, names: List[str], nproc: int) -> None:
    """Check that every image has a trimap of its size and that both decode;
    raise ValueError."""
    missing = [
        name for name in names if not all(
            osp.isfile(osp.join(out_dir, *member.split('/')))
            for member in _pair_members(name))
    ]
    if missing:
        raise ValueError(
            f'{len(missing)} listed images lack the image or the trimap, '
            f'e.g. {missing[:5]}; are the archives complete?')
    print(f'Decoding {len(names)} images and their trimaps')
    decode = partial(_decode_pair, out_dir)
    if nproc == 1:
        problems = track_progress(decode, names)
    else:
        problems = track_parallel_progress(decode, names, nproc)
    bad = [problem for problem in problems if problem]
    if bad:
        raise ValueError(f'{len(bad)} of {len(names)} image/trimap pairs are '
                         'unreadable or mismatched, e.g. '
                         f'{"; ".join(bad[:5])}; download the archives again')


def convert_oxford_pet(images: str,
                       annotations: str,
                       out_dir: str,
                       overwrite: bool = False,
                       nproc: int = 1) -> List[str]:
    """Write the dataset under ``out_dir``.

    Args:
        images (str): ``images.tar.gz`` or the ``images/`` folder.
        annotations (str): ``annotations.tar.gz`` or the ``annotations/``
            folder.
        out_dir (str): Output folder, the dataset's ``data_root``.
        overwrite (bool): Replace an existing, non-empty ``out_dir``.
            Default: ``False``.
        nproc (int): Number of processes that decode the written images.
            Default: 1 (this process).

    Returns:
        list[str]: Names of the converted images (trainval, then test).

    Raises:
        FileNotFoundError: If an input is missing.
        FileExistsError: If ``out_dir`` is not empty and not ``overwrite``.
        ValueError: If an input is corrupt or incomplete.
    """
    if nproc < 1:
        raise ValueError(f'nproc must be at least 1, got {nproc}')
    with atomic_folder(out_dir, overwrite) as tmp:
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
        names = []
        for list_name in CONVERTED_SPLITS:
            listed = split_names(lists[list_name].decode().splitlines())
            if not listed:
                raise ValueError(f'{annotations!r}: annotations/{list_name} '
                                 'names no image; download it again')
            names += listed
        for top, source, folder, suffix in (
            ('annotations', annotations, 'trimaps/', '.png'),
            ('images', images, '', '.jpg'),
        ):
            wanted = [folder + name + suffix for name in names]
            print(f'Copying {len(wanted)} {top}/{folder}*{suffix} from '
                  f'{source}')
            files = _read_files(source, top, wanted)
            for path, content in track_iter_progress((files, len(wanted))):
                with open(osp.join(tmp, top, *path.split('/')), 'wb') as f:
                    f.write(content)
        _check_image_pairs(tmp, names, nproc)
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
    parser.add_argument(
        '--nproc',
        type=int,
        default=min(4, os.cpu_count() or 1),
        help='number of processes that decode the images (default: the '
        'CPU count, at most 4)')
    args = parser.parse_args()
    try:
        names = convert_oxford_pet(args.images, args.annotations,
                                   args.out_dir, args.overwrite, args.nproc)
    except (OSError, ValueError) as err:
        sys.exit(f'error: {err}')
    print(f'{len(names)} images written to {args.out_dir}')


if __name__ == '__main__':
    main()
