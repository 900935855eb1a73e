"""A picture of what PAT sees for one training image.

Four panels side by side: the augmented image, its label, the confidence
the memory held for each pixel (what the loss used as q; grey where nothing
was stored) and PAT's weight map on a log scale. Drawn by
``PrevPredictionHook(vis_interval=N)`` through MMEngine's visualizer, so it
lands in whatever backend the config names (local files, TensorBoard).
"""
from typing import Optional, Sequence

import numpy as np
from matplotlib import colormaps
from torch import Tensor

from mmseg_pat.models.losses.pat import pat_confidence, pat_log_weight_map

_UNSEEN_GREY = np.array([128, 128, 128], np.uint8)


def _colour(values: np.ndarray, low: float, high: float,
            cmap: str) -> np.ndarray:
    scaled = np.clip((values - low) / max(high - low, 1e-12), 0, 1)
    return (colormaps[cmap](scaled)[..., :3] * 255).astype(np.uint8)


def _label_colours(label: np.ndarray, palette: Optional[Sequence],
                   ignore_index: int) -> np.ndarray:
    if palette is None:
        table = (colormaps['tab20'](np.arange(256) % 20)[:, :3] *
                 255).astype(np.uint8)
    else:
        table = np.zeros((256, 3), np.uint8)
        table[:len(palette)] = np.asarray(palette, np.uint8)[:256]
    out = table[np.clip(label, 0, 255)]
    out[label == ignore_index] = 0
    return out


def memory_panel(image: Tensor,
                 label: Tensor,
                 stored: Tensor,
                 current: Tensor,
                 num_classes: int,
                 curve: str = 'ina',
                 palette: Optional[Sequence] = None,
                 ignore_index: int = 255,
                 bgr: bool = True,
                 homogenize: str = 'none',
                 max_log_weight: Optional[float] = None) -> np.ndarray:
    """The four panels of one image as an RGB uint8 array (h, 4 w, 3).

    Args:
        image (Tensor): The augmented image (3, h, w), uint8 or float
            0-255, as the data loader gives it.
        label (Tensor): Its label (h, w).
        stored (Tensor): The memory's confidence of each pixel (h, w),
            negative where nothing was stored.
        current (Tensor): The current confidence (h, w), negative where
            ignored.
        num_classes (int): C, for the weight curve.
        curve (str): PATLoss's curve. Default: ``'ina'``.
        palette (Sequence, optional): RGB colour of each class.
        ignore_index (int): Label of ignored pixels. Default: 255.
        bgr (bool): The image's channels are BGR (MMCV loads so).
            Default: True.
        homogenize (str): PATLoss's ``homogenize``; the class areas are
            this image's (the loss's are the batch's). Default: ``'none'``.
        max_log_weight (float, optional): PATLoss's cap. Default: None.
    """
    h, w = label.shape[-2:]
    img = image[:, :h, :w].detach().float().clamp(0, 255).byte().cpu()
    img = img.permute(1, 2, 0).numpy()
    if bgr:
        img = img[..., ::-1]
    label = label[..., :h, :w].detach().cpu().reshape(h, w)
    stored = stored[:h, :w].detach().float().cpu()
    current = current[:h, :w].detach().float().cpu()
    seen = (stored >= 0).numpy()

    memory = _colour(stored.numpy(), 0.0, 1.0, 'viridis')
    memory[~seen] = _UNSEEN_GREY
    # the weights as the loss computes them, from the confidence it uses
    log_w = pat_log_weight_map(
        pat_confidence(stored, current), label, num_classes, curve,
        homogenize, max_log_weight, ignore_index).numpy()
    valid = np.isfinite(log_w)
    weights = _colour(log_w, float(log_w[valid].min()) if valid.any() else 0,
                      float(log_w[valid].max()) if valid.any() else 1,
                      'magma')
    weights[~valid] = 0
    label = label.numpy().astype(np.int64)
    panels = [
        np.ascontiguousarray(img),
        _label_colours(label, palette, ignore_index), memory, weights
    ]
    return np.concatenate(panels, axis=1)
