"""A procedural long-tailed segmentation dataset, generated on first use.

Scenes are a textured background with shapes of several classes drawn on
it. The frequency of the shape classes falls geometrically from the first to
the last, so the ratio between the most and the least frequent class is a
parameter (``imbalance_ratio``). Everything is drawn by this module from a
seed: the project ships no image of its own.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, Sequence, Tuple

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS
from PIL import Image

from mmseg_pat.datasets.base import NameFilesInLoadErrorsMixin
from mmseg_pat.utils.atomic import atomic_folder

SHAPE_CLASSES = ('square', 'disc', 'triangle', 'ring', 'cross', 'bar')
# One colour per class; shapes get a jitter around it, so colour alone is a
# strong but not a perfect cue.
_CLASS_COLOURS = ((220, 60, 50), (60, 170, 70), (60, 90, 220),
                  (230, 200, 40), (180, 70, 200), (40, 200, 210))
_META_FILE = 'generation.json'


def class_probabilities(num_shape_classes: int,
                        imbalance_ratio: float) -> np.ndarray:
    """Draw probabilities of the shape classes, head first.

    Args:
        num_shape_classes (int): Number of shape classes.
        imbalance_ratio (float): Probability of the first class over that of
            the last (>= 1).

    Returns:
        np.ndarray: Probabilities that fall geometrically and sum to 1.
    """
    if imbalance_ratio < 1:
        raise ValueError(
            f'imbalance_ratio must be >= 1, got {imbalance_ratio}')
    steps = np.arange(num_shape_classes) / max(num_shape_classes - 1, 1)
    p = imbalance_ratio**(-steps)
    return p / p.sum()


def _draw_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of one shape on a ``size`` x ``size`` canvas."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    c = size / 2
    r = size / 2
    if kind == 'square':
        return np.ones((size, size), bool)
    if kind == 'disc':
        return (yy - c)**2 + (xx - c)**2 <= r**2
    if kind == 'ring':
        d2 = (yy - c)**2 + (xx - c)**2
        return (d2 <= r**2) & (d2 >= (0.55 * r)**2)
    if kind == 'triangle':
        return (yy >= size * 0.1) & (np.abs(xx - c) <= (yy / size) * r)
    if kind == 'cross':
        w = size * rng.uniform(0.25, 0.4) / 2
        return (np.abs(xx - c) <= w) | (np.abs(yy - c) <= w)
    if kind == 'bar':
        w = size * rng.uniform(0.18, 0.3) / 2
        return np.abs(yy - c) <= w
    raise ValueError(f'unknown shape {kind!r}')


def _background(size: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A textured background: a colour gradient, stripes and noise."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(70, 160, size=3)
    slope = rng.uniform(-0.6, 0.6, size=(2, 3))
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(6, 20)
    stripes = 18 * np.sin(
        (xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    img = (base + yy[..., None] * slope[0] + xx[..., None] * slope[1] +
           stripes[..., None] + rng.normal(0, 12, size=(h, w, 3)))
    return img


def generate_scene(rng: np.random.Generator, size: Tuple[int, int],
                   probabilities: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one image (H, W, 3) uint8 and its label map (H, W) uint8.

    Label 0 is the background, ``k + 1`` the k-th shape class.
    """
    h, w = size
    img = _background(size, rng)
    label = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(1, 5)):
        k = rng.choice(len(probabilities), p=probabilities)
        short = min(h, w)
        side = int(rng.integers(max(6, short // 8), max(7, short // 2)))
        top = int(rng.integers(-side // 4, h - side + side // 4))
        left = int(rng.integers(-side // 4, w - side + side // 4))
        mask = _draw_mask(SHAPE_CLASSES[k], side, rng)
        if rng.random() < 0.5:
            mask = mask.T
        canvas = np.zeros((h, w), bool)
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + side, h), min(left + side, w)
        canvas[y0:y1, x0:x1] = mask[y0 - top:y1 - top, x0 - left:x1 - left]
        colour = np.array(_CLASS_COLOURS[k]) + rng.normal(0, 25, size=3)
        img[canvas] = colour + rng.normal(0, 10, size=(canvas.sum(), 3))
        label[canvas] = k + 1
    return np.clip(img, 0, 255).astype(np.uint8), label


def generate_long_tail_shapes(root: str,
                              num_train: int = 160,
                              num_val: int = 40,
                              image_size: Tuple[int, int] = (64, 64),
                              imbalance_ratio: float = 50.0,
                              num_shape_classes: int = 5,
                              seed: int = 0) -> Dict:
    """Write the dataset under ``root`` unless it is already there.

    The layout is MMSeg's: ``img_dir/{train,val}/*.png`` and
    ``ann_dir/{train,val}/*.png``, plus ``generation.json`` with the
    parameters. A root generated with other parameters is regenerated.
    Writing goes to a temporary folder renamed into place
    (:func:`~mmseg_pat.utils.atomic.atomic_folder`), so an interrupted run
    never leaves a half-written dataset.

    Returns:
        dict: The generation parameters.
    """
    if not 1 <= num_shape_classes <= len(SHAPE_CLASSES):
        raise ValueError(f'num_shape_classes must be in [1, '
                         f'{len(SHAPE_CLASSES)}], got {num_shape_classes}')
    params = dict(
        num_train=num_train,
        num_val=num_val,
        image_size=list(image_size),
        imbalance_ratio=float(imbalance_ratio),
        num_shape_classes=num_shape_classes,
        seed=seed,
        version=1)
    if _is_generated(root, params):
        return params
    try:
        with atomic_folder(root, overwrite=True) as tmp:
            _write_scenes(tmp, params)
    except OSError:
        # Another process generated the same root and replaced it first.
        if _is_generated(root, params):
            return params
        raise
    return params


def _is_generated(root: str, params: Dict) -> bool:
    """Whether ``root`` holds the dataset generated with ``params``."""
    meta_path = osp.join(root, _META_FILE)
    if not osp.isfile(meta_path):
        return False
    with open(meta_path) as f:
        return json.load(f) == params


def _write_scenes(folder: str, params: Dict) -> None:
    """Write the dataset of the generation ``params`` into ``folder``."""
    rng = np.random.default_rng(params['seed'])
    probabilities = class_probabilities(params['num_shape_classes'],
                                        params['imbalance_ratio'])
    for split in ('train', 'val'):
        os.makedirs(osp.join(folder, 'img_dir', split))
        os.makedirs(osp.join(folder, 'ann_dir', split))
        for i in range(params[f'num_{split}']):
            img, label = generate_scene(rng, tuple(params['image_size']),
                                        probabilities)
            Image.fromarray(img).save(
                osp.join(folder, 'img_dir', split, f'{i:05d}.png'))
            Image.fromarray(label).save(
                osp.join(folder, 'ann_dir', split, f'{i:05d}.png'))
    with open(osp.join(folder, _META_FILE), 'w') as f:
        json.dump(params, f, indent=1)


@DATASETS.register_module()
class LongTailShapesDataset(NameFilesInLoadErrorsMixin, BaseSegDataset):
    """Generated long-tailed shapes, made from a seed on first use.

    Class 0 is the background; then the shape classes, from the most to the
    least frequent.

    Args:
        data_root (str): Where the dataset is (or will be) generated.
        generation (dict): Keyword arguments of
            :func:`generate_long_tail_shapes` (``num_train``, ``num_val``,
            ``image_size``, ``imbalance_ratio``, ``num_shape_classes``,
            ``seed``). Default: ``{}`` (the defaults there).
        **kwargs: Passed to :class:`BaseSegDataset`, e.g. ``data_prefix``.
    """

    GENERATED = True  # makes its own data_root
    METAINFO = dict(
        classes=('background', ) + SHAPE_CLASSES,
        palette=[[90, 90, 90]] + [list(c) for c in _CLASS_COLOURS])

    def __init__(self,
                 data_root: str,
                 generation: Dict = None,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 metainfo: Dict = None,
                 **kwargs) -> None:
        params = generate_long_tail_shapes(data_root, **(generation or {}))
        classes: Sequence[str] = self.METAINFO['classes'][
            :params['num_shape_classes'] + 1]
        metainfo = {
            'classes': classes,
            'palette': self.METAINFO['palette'][:len(classes)],
            **(metainfo or {})
        }
        super().__init__(
            data_root=data_root,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            metainfo=metainfo,
            **kwargs)
