"""Leave-one-breed-out folds of Oxford-IIIT Pet: does a loss's gain reach
kinds of images it never trained on?

A fold trains on the other breeds and evaluates on the held-out one, from
split lists written into the run's own folder: the data root is only read.
"""
import os
import os.path as osp
from typing import Optional, Sequence, Tuple

from mmengine.config import Config

from mmseg_pat.datasets.oxford_pet import split_names

from .presets import HELD_OUT_BREED


def breed_of(name: str) -> str:
    """The breed of an Oxford-IIIT Pet image: ``'american_bulldog_10'`` ->
    ``'american_bulldog'``."""
    return name.rsplit('_', 1)[0]


def write_breed_fold(data_root: str, held_out: str,
                     breeds: Optional[Sequence[str]],
                     split_dir: str) -> Tuple[str, str]:
    """Split lists of one leave-one-breed-out fold of Oxford-IIIT Pet.

    Every image of the data root's official lists (``trainval.txt`` and
    ``test.txt``) whose breed is in ``breeds`` goes to the training list,
    except those of ``held_out``, which make the evaluation list.

    Args:
        data_root (str): An Oxford-IIIT Pet data root.
        held_out (str): The breed evaluated on, e.g. ``'Bengal'``.
        breeds (Sequence[str], optional): The breeds of the fold. Default:
            None (every breed in the lists).
        split_dir (str): Where ``train.txt`` and ``test.txt`` are written.

    Returns:
        tuple[str, str]: The absolute paths of the training and the
        evaluation list.

    Raises:
        ValueError: If ``held_out`` is not among ``breeds``, or a list
            would be empty.
    """
    names = []
    for split in ('trainval', 'test'):
        with open(osp.join(data_root, 'annotations', f'{split}.txt')) as f:
            names += split_names(f)
    breeds = list(breeds or dict.fromkeys(map(breed_of, names)))
    if held_out not in breeds:
        raise ValueError(f'{HELD_OUT_BREED}={held_out!r} is not one of the '
                         f'breeds {breeds}')
    lists = dict(
        train=[n for n in names
               if breed_of(n) in breeds and breed_of(n) != held_out],
        test=[n for n in names if breed_of(n) == held_out])
    os.makedirs(split_dir, exist_ok=True)
    paths = []
    for split, members in lists.items():
        if not members:
            raise ValueError(
                f'leaving out {held_out!r}, the {split} list of breeds '
                f'{breeds} in {data_root} would be empty')
        paths.append(osp.abspath(osp.join(split_dir, f'{split}.txt')))
        with open(paths[-1], 'w') as f:
            f.writelines(f'{name}\n' for name in members)
    return paths[0], paths[1]


def set_breed_fold(cfg: Config, held_out: str,
                   breeds: Optional[Sequence[str]], split_dir: str) -> None:
    """Train on the other breeds, evaluate on ``held_out``
    (:func:`write_breed_fold`, lists in ``split_dir``, from the training
    loader's data root)."""
    train, test = write_breed_fold(cfg.train_dataloader.dataset.data_root,
                                   held_out, breeds, split_dir)
    cfg.train_dataloader.dataset.ann_file = train
    for loader in ('val_dataloader', 'test_dataloader'):
        if loader in cfg:
            cfg[loader].dataset.ann_file = test
