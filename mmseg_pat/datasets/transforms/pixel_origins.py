"""Track where each training pixel came from through the augmentation.

MMSeg's train pipeline resizes, crops and flips, and records no crop box.
:class:`LoadPixelOrigins` adds the original row and column of every pixel as
two extra ``seg_fields``, so every geometric transform that moves the label
(``RandomResize``, ``RandomCrop``, ``RandomFlip``, ``RandomRotate``, ...)
moves them exactly the same way, with nearest-neighbour interpolation.
:class:`PackSegInputsWithOrigins` puts them into the data sample. From them,
:class:`PrevPredictionHook` finds, for each pixel of an augmented crop, the
cell of its image's memory grid.

Pixels that a transform fills (padding, rotation borders) get the seg pad
value in these maps as in the label, where they are ignored anyway.
"""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import PixelData
from mmseg.datasets.transforms import LoadAnnotations, PackSegInputs
from mmseg.registry import TRANSFORMS

ORIGIN_FIELDS = ('origin_row', 'origin_col')
_MAX_SIDE = np.iinfo(np.uint16).max
# Keys that MMCV's resize and flip transforms add (a crop shows in the
# label's shape).
_GEOMETRY_KEYS = ('scale_factor', 'flip')


@TRANSFORMS.register_module()
class LoadPixelOrigins(BaseTransform):
    """Add the original row and column of each pixel as segmentation fields.

    Place it right after ``LoadAnnotations``. Required keys: ``gt_seg_map``,
    ``seg_fields``, ``sample_idx``. Added keys: ``origin_row``,
    ``origin_col`` (uint16 maps of the label's shape), ``origin_shape``.
    """

    def transform(self, results: dict) -> dict:
        if 'gt_seg_map' not in results:
            raise KeyError(
                'LoadPixelOrigins needs the label: place it right after '
                "dict(type='LoadAnnotations') in the train pipeline.")
        h, w = results['gt_seg_map'].shape[:2]
        moved = [key for key in _GEOMETRY_KEYS if key in results]
        ori_shape = results.get('ori_shape')
        if ori_shape is not None and tuple(ori_shape[:2]) != (h, w):
            moved.append(f'label {h}x{w} != loaded image '
                         f'{ori_shape[0]}x{ori_shape[1]}')
        if moved:
            raise ValueError(
                'LoadPixelOrigins must see the label as it was loaded, but '
                'a geometric transform has already changed it '
                f'({", ".join(moved)}): the memory would be indexed by crop '
                'coordinates. Place dict(type=\'LoadPixelOrigins\') right '
                "after dict(type='LoadAnnotations'), before any resize, "
                'crop or flip.')
        if max(h, w) > _MAX_SIDE:
            raise ValueError(f'label of {h}x{w} pixels: LoadPixelOrigins '
                             f'supports sides up to {_MAX_SIDE}')
        rows = np.arange(h, dtype=np.uint16)[:, None]
        cols = np.arange(w, dtype=np.uint16)[None, :]
        results['origin_row'] = np.ascontiguousarray(np.broadcast_to(rows,
                                                                     (h, w)))
        results['origin_col'] = np.ascontiguousarray(np.broadcast_to(cols,
                                                                     (h, w)))
        results['origin_shape'] = (h, w)
        results.setdefault('seg_fields', []).extend(ORIGIN_FIELDS)
        return results


@TRANSFORMS.register_module()
class PackSegInputsWithOrigins(PackSegInputs):
    """``PackSegInputs`` that also packs the pixel origins.

    Use it in place of ``PackSegInputs`` (same arguments). The data sample
    also gets ``pixel_origin`` (PixelData, int32 (2, H, W): the original row
    and column of each pixel) and the metainfo ``sample_idx`` (the image's
    index in the dataset) and ``origin_shape`` (the label's shape when it
    was loaded).
    """

    def transform(self, results: dict) -> dict:
        missing = [k for k in ORIGIN_FIELDS if k not in results]
        if missing:
            raise KeyError(
                f'{missing} not found: add dict(type=\'LoadPixelOrigins\') '
                "right after dict(type='LoadAnnotations').")
        origin = np.stack([results[k] for k in ORIGIN_FIELDS])
        packed = super().transform(results)
        sample = packed['data_samples']
        sample.pixel_origin = PixelData(
            data=torch.from_numpy(origin.astype(np.int32)))
        sample.set_metainfo(
            dict(
                sample_idx=results['sample_idx'],
                origin_shape=results['origin_shape']))
        return packed


def _transform_class(step):
    """The class a pipeline step (a config dict or a built transform)
    is, or None where the registry does not know its type."""
    if not isinstance(step, dict):
        return type(step)
    kind = step.get('type')
    return kind if isinstance(kind, type) else TRANSFORMS.get(kind)


def _is(step, cls) -> bool:
    kind = _transform_class(step)
    return isinstance(kind, type) and issubclass(kind, cls)


def carries_pixel_origins(pipeline) -> bool:
    """Whether a train pipeline (configs or built transforms) loads the
    pixel origins right after the labels and packs them.

    Raises:
        ValueError: If ``LoadPixelOrigins`` comes before ``LoadAnnotations``.
    """
    loads = [i for i, t in enumerate(pipeline) if _is(t, LoadAnnotations)]
    origins = [i for i, t in enumerate(pipeline) if _is(t, LoadPixelOrigins)]
    if origins and loads and origins[0] < loads[0]:
        raise ValueError(
            'LoadPixelOrigins comes before LoadAnnotations in the training '
            "pipeline: place it right after dict(type='LoadAnnotations').")
    packs = [t for t in pipeline if _is(t, PackSegInputs)]
    return bool(origins and packs) and _is(packs[-1],
                                           PackSegInputsWithOrigins)


def add_pixel_origins(pipeline: list) -> list:
    """Complete a train pipeline config (a list of dicts, edited in place)
    with the pixel origins: ``LoadPixelOrigins`` right after
    ``LoadAnnotations``, ``PackSegInputsWithOrigins`` in place of
    ``PackSegInputs`` (its ``meta_keys`` kept).

    Returns:
        list[str]: What was changed, for the log; empty if nothing.

    Raises:
        ValueError: If the pipeline has no ``LoadAnnotations`` or no
            ``PackSegInputs`` to work from, saying what to add.
    """
    if carries_pixel_origins(pipeline):
        return []
    loads = [i for i, t in enumerate(pipeline) if _is(t, LoadAnnotations)]
    packs = [i for i, t in enumerate(pipeline) if _is(t, PackSegInputs)]
    if not loads or not packs:
        raise ValueError(
            'PrevPredictionHook cannot find LoadAnnotations and '
            'PackSegInputs in the training pipeline to add the pixel '
            "origins; add dict(type='LoadPixelOrigins') right after the "
            "transform that loads the labels and dict(type="
            "'PackSegInputsWithOrigins') in place of the packing one.")
    changes = []
    if not any(_is(t, LoadPixelOrigins) for t in pipeline):
        pipeline.insert(loads[0] + 1, dict(type='LoadPixelOrigins'))
        changes.append('LoadPixelOrigins after LoadAnnotations')
        packs = [i + (i > loads[0]) for i in packs]
    pack = pipeline[packs[-1]]
    if not _is(pack, PackSegInputsWithOrigins):
        keys = {k: v for k, v in pack.items() if k == 'meta_keys'}
        pipeline[packs[-1]] = dict(type='PackSegInputsWithOrigins', **keys)
        changes.append('PackSegInputsWithOrigins in place of PackSegInputs'
                       + (' (same meta_keys)' if keys else ''))
    return changes
