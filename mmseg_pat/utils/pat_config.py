"""Whether PAT applies to a config's model, decided before it is built.

PAT (``PATLoss`` with ``PrevPredictionHook``) reweights the per-pixel decode
loss, ``loss_decode``, of MMSeg's decode heads: the subclasses of
``BaseDecodeHead`` (FCN, PSPNet, DeepLabV3+, UPerNet, SegFormer, OCRNet,
BiSeNetV2, ...). Other heads have no such loss: MaskFormer and Mask2Former
heads, for instance, match queries to masks and compute set losses
(classification, mask and dice losses of the matched pairs). A config that
asks for PAT on such a model would fail later, far from the cause, or, where
the head swallows the ``loss_decode`` it has no use for, train without PAT;
:func:`check_pat_applies` refuses it before anything is built, with a
message that says why.
"""
from typing import Iterator, Mapping, Optional, Tuple

from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS

#: Type names that ask for PAT: the loss, anywhere in ``model``, and the hook,
#: in ``custom_hooks``.
PAT_LOSS = 'PATLoss'
PAT_HOOK = 'PrevPredictionHook'
#: The model keys that hold decode heads, each a dict or a list of dicts.
HEAD_KEYS = ('decode_head', 'auxiliary_head')


def _type_name(type_) -> str:
    """The name of a config's ``type``: ``'mmseg.FCNHead'`` -> ``'FCNHead'``;
    a class (as in MMEngine's pure-Python configs) -> its name."""
    if isinstance(type_, str):
        return type_.rsplit('.', 1)[-1]
    return getattr(type_, '__name__', '')


def _types_in(node) -> Iterator[str]:
    """The type name of every dict, at any depth, under ``node``."""
    if isinstance(node, Mapping):
        if 'type' in node:
            yield _type_name(node['type'])
        for value in node.values():
            yield from _types_in(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _types_in(value)


def _decode_heads(model: Mapping) -> Iterator[Tuple[str, Mapping]]:
    """``('decode_head[1]', cfg)`` for every head of ``model``'s decode
    and auxiliary heads, each given as a dict or as a list of dicts."""
    for key in HEAD_KEYS:
        heads = model.get(key)
        if isinstance(heads, Mapping):
            yield key, heads
        elif isinstance(heads, (list, tuple)):
            for i, head in enumerate(heads):
                yield f'{key}[{i}]', head


def _registered_class(type_) -> Optional[type]:
    """The class a ``type`` names in MMSeg's model registry; None when the
    registry does not know it (building the model then says so)."""
    if isinstance(type_, type):
        return type_
    return MODELS.get(type_) if isinstance(type_, str) else None


def check_pat_applies(cfg: Mapping) -> None:
    """Refuse a config that asks for PAT on heads without a per-pixel loss.

    A config asks for PAT when its ``model`` holds a ``PATLoss`` or its
    ``custom_hooks`` a ``PrevPredictionHook``. Then every head in
    ``model.decode_head`` and ``model.auxiliary_head`` (a dict or a list of
    dicts) must be registered as a subclass of MMSeg's ``BaseDecodeHead``;
    a head type that the registry does not know is left to the model's
    build, which reports it. Configs that do not ask for PAT pass.

    Args:
        cfg (Config | dict): The whole config (``model``, ``custom_hooks``).

    Raises:
        ValueError: If the config asks for PAT and the model has no decode
            head, or a head that is not a ``BaseDecodeHead`` (named in the
            message, e.g. ``Mask2FormerHead``).
    """
    model = cfg.get('model') or {}
    hooks = cfg.get('custom_hooks') or []
    if (PAT_LOSS not in _types_in(model)
            and PAT_HOOK not in _types_in(hooks)):
        return
    heads = list(_decode_heads(model))
    if not heads:
        raise ValueError(
            f'The config asks for PAT ({PAT_LOSS} or {PAT_HOOK}) but its '
            f'model (type {model.get("type")!r}) has no decode_head: PAT '
            "reweights the per-pixel loss (loss_decode) of MMSeg's decode "
            'heads.')
    for where, head in heads:
        cls = _registered_class(head.get('type'))
        if cls is None or issubclass(cls, BaseDecodeHead):
            continue
        raise ValueError(
            f'PAT does not apply to model.{where}, a {cls.__name__}: PAT '
            "reweights the per-pixel decode loss (loss_decode) of MMSeg's "
            'decode heads, the subclasses of BaseDecodeHead, and '
            f'{cls.__name__} is not one. MaskFormer and Mask2Former heads '
            'compute mask-classification set losses (queries matched to '
            'masks: classification, mask and dice losses), not a per-pixel '
            f'decode loss. Remove {PAT_LOSS} and {PAT_HOOK} from this '
            'config, or use a model with a per-pixel decode head (FCN, '
            'PSPNet, DeepLabV3+, UPerNet, SegFormer, OCRNet, ...).')
