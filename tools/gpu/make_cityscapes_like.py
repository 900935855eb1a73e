"""Write a small generated dataset in MMSeg's Cityscapes layout.

For benchmarks on a machine without the real data (the GPU check runs on a
machine that has none): full-size 2048 x 1024 images and 19-class
``*_gtFine_labelTrainIds.png`` labels, so that the project's Cityscapes
configs (``configs/*/segformer_cityscapes.py``) run unchanged with
``data_root`` pointed here::

    <out>/leftImg8bit/{train,val}/<city>/<city>_000000_<i>_leftImg8bit.png
    <out>/gtFine/{train,val}/<city>/<city>_000000_<i>_gtFine_labelTrainIds.png

The class mix is long-tailed like Cityscapes' own (road, building and
vegetation take most pixels; rider, motorcycle and the like about 0.1-0.2%):
horizontal bands of sky / building / vegetation / road, then blobs of the
other classes with areas drawn around their Cityscapes frequencies (each
class drawn in every image; a later blob may cover part of an earlier one),
and an ignored strip at the bottom (255, like the ego vehicle). Images are
class colours plus smooth noise, so the PNGs are a realistic 2.4 MB and
decode at about the speed of real ones (50 ms here). Timing only: nothing
is meant to be learnt from it.

Needs numpy and OpenCV only (no mmseg), so it runs before anything is
installed. Usage::

    python tools/gpu/make_cityscapes_like.py OUT [--train 10] [--val 2]
        [--size 2048x1024] [--seed 0]
"""
import argparse
import os
import os.path as osp
import time

import cv2
import numpy as np

# Cityscapes' 19 train classes: approximate pixel frequencies of the real
# training set (fractions of the labelled pixels) and MMSeg's palette.
CLASSES = [
    ('road', 0.369, (128, 64, 128)), ('sidewalk', 0.061, (244, 35, 232)),
    ('building', 0.228, (70, 70, 70)), ('wall', 0.0066, (102, 102, 156)),
    ('fence', 0.0088, (190, 153, 153)), ('pole', 0.0123, (153, 153, 153)),
    ('traffic light', 0.0021, (250, 170, 30)),
    ('traffic sign', 0.0055, (220, 220, 0)),
    ('vegetation', 0.159, (107, 142, 35)), ('terrain', 0.0116,
                                            (152, 251, 152)),
    ('sky', 0.0401, (70, 130, 180)), ('person', 0.0122, (220, 20, 60)),
    ('rider', 0.0014, (255, 0, 0)), ('car', 0.0701, (0, 0, 142)),
    ('truck', 0.0027, (0, 0, 70)), ('bus', 0.0023, (0, 60, 100)),
    ('train', 0.0023, (0, 80, 100)), ('motorcycle', 0.0010, (0, 0, 230)),
    ('bicycle', 0.0041, (119, 11, 32))
]
SKY, BUILDING, VEGETATION, ROAD, SIDEWALK = 10, 2, 8, 0, 1
BAND_CLASSES = {SKY, BUILDING, VEGETATION, ROAD, SIDEWALK}
IGNORE = 255


def make_label(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    label = np.empty((h, w), np.uint8)
    # Bands from the top: sky, building, vegetation, sidewalk, road; their
    # borders jitter per image.
    sky = int(h * rng.uniform(0.03, 0.08))
    building = sky + int(h * rng.uniform(0.25, 0.33))
    vegetation = building + int(h * rng.uniform(0.12, 0.2))
    sidewalk = vegetation + int(h * rng.uniform(0.04, 0.08))
    label[:sky] = SKY
    label[sky:building] = BUILDING
    label[building:vegetation] = VEGETATION
    label[vegetation:sidewalk] = SIDEWALK
    label[sidewalk:] = ROAD
    # The other classes as blobs (ellipses and boxes), each class's total
    # area drawn around its frequency, in a few pieces.
    for cls, (_, freq, _) in enumerate(CLASSES):
        if cls in BAND_CLASSES:
            continue
        area = freq * h * w * rng.uniform(0.6, 1.4)
        pieces = int(rng.integers(1, 4))
        for _ in range(pieces):
            a = area / pieces
            aspect = rng.uniform(0.3, 3.0)  # width / height
            bh = max(2, int(np.sqrt(a / aspect)))
            bw = max(2, int(a / bh))
            bh, bw = min(bh, h // 2), min(bw, w // 2)
            y = int(rng.integers(sky, h - bh))
            x = int(rng.integers(0, w - bw))
            if rng.random() < 0.5:
                label[y:y + bh, x:x + bw] = cls
            else:
                cv2.ellipse(label, (x + bw // 2, y + bh // 2),
                            (bw // 2, bh // 2), 0, 0, 360, int(cls), -1)
    label[h - int(h * rng.uniform(0.04, 0.08)):] = IGNORE  # ego vehicle
    return label


def make_image(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    h, w = label.shape
    palette = np.zeros((256, 3), np.int16)
    for cls, (_, _, rgb) in enumerate(CLASSES):
        palette[cls] = rgb[::-1]  # OpenCV writes BGR
    image = palette[label]
    # Smooth noise (drawn at 1/8 size, upsampled): texture without making
    # the PNG incompressible.
    noise = rng.normal(0, 18, (h // 8, w // 8, 3)).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def write_split(out: str, split: str, count: int, size, seed: int,
                city: str) -> None:
    w, h = size
    img_dir = osp.join(out, 'leftImg8bit', split, city)
    ann_dir = osp.join(out, 'gtFine', split, city)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng([seed, 0 if split == 'train' else 1, i])
        label = make_label(rng, h, w)
        image = make_image(rng, label)
        stem = f'{city}_000000_{i:06d}'
        # Compression level 1: fast to write; real Cityscapes PNGs are
        # about the same size.
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
        assert cv2.imwrite(
            osp.join(img_dir, f'{stem}_leftImg8bit.png'), image, params)
        assert cv2.imwrite(
            osp.join(ann_dir, f'{stem}_gtFine_labelTrainIds.png'), label,
            params)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='data_root to write')
    parser.add_argument('--train', type=int, default=10)
    parser.add_argument('--val', type=int, default=2)
    parser.add_argument('--size', default='2048x1024', help='WxH')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--city', default='generated')
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split('x'))
    if len(size) != 2 or min(size) < 32:
        parser.error(f'--size must be WxH, each >= 32; got {args.size}')
    start = time.perf_counter()
    write_split(args.out, 'train', args.train, size, args.seed, args.city)
    write_split(args.out, 'val', args.val, size, args.seed, args.city)
    print(f'wrote {args.train} train + {args.val} val images of '
          f'{size[0]}x{size[1]} in Cityscapes layout to {args.out} '
          f'({time.perf_counter() - start:.1f} s)')


if __name__ == '__main__':
    main()
