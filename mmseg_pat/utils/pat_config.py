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
message that says why. Decode heads whose loss is not a per-pixel loss of
the semantic labels are refused the same way, naming the head and what to
do; heads whose loss is computed on sampled points (PointRend's
``PointHead``) train with PAT's current confidence there.
"""
from typing import Iterator, Mapping, Optional

from mmengine.logging import print_log
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS

from .model_heads import head_configs

#: Type names that ask for PAT: the loss, anywhere in ``model``, and the hook,
#: in ``custom_hooks``.
PAT_LOSS = 'PATLoss'
PAT_HOOK = 'PrevPredictionHook'

#: Decode heads whose ``loss_decode`` does not learn the semantic labels per
#: pixel: head -> what it learns and what to do instead.
REFUSED_HEADS = {
    'STDCHead': (
        'its loss_decode learns boundary maps (the detail loss of STDC), not '
        'the classes. Keep its own losses (CrossEntropyLoss with '
        'use_sigmoid=True and DiceLoss) and put PATLoss on the other heads'),
    'PIDHead': (
        'its four loss_decode entries learn the classes, the boundaries and '
        'their product, indexed by position. Keep PIDNet\'s losses'),
    'VPDDepthHead': (
        'it regresses depth, there are no classes to weight. Keep its loss'),
    'SideAdapterCLIPHead': (
        'SAN matches queries to masks and computes set losses, not a '
        'per-pixel decode loss. Use a model with a per-pixel decode head'),
}
#: Decode heads that index ``loss_decode``: head -> the losses it needs.
LOSS_LISTS = {'DDRHead': 2}
#: Decode heads that build their losses in a sub-head: head -> that key.
NESTED_HEADS = {'IterativeDecodeHead': 'kernel_generate_head'}
#: Decode heads that call their loss several times an iteration, where the
#: model's prediction is not the last call: head -> the call that is.
PREDICTION_CALLS = {'DAHead': 'first'}
#: Heads whose loss sees point-sampled logits (N, C, P): PAT cannot read the
#: memory there and uses the current confidence, like confidence='current'.
POINT_HEADS = ('PointHead', )


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


def _registered_class(type_) -> Optional[type]:
    """The class a ``type`` names in MMSeg's model registry; None when the
    registry does not know it (building the model then says so)."""
    if isinstance(type_, type):
        return type_
    return MODELS.get(type_) if isinstance(type_, str) else None


def _kind(cls: type) -> Optional[str]:
    """The first name of ``cls`` or its bases that a rule table knows."""
    for base in cls.__mro__:
        if base.__name__ in (*REFUSED_HEADS, *LOSS_LISTS, *NESTED_HEADS,
                             *POINT_HEADS):
            return base.__name__
    return None


def check_pat_applies(cfg: Mapping) -> None:
    """Refuse a config that asks for PAT where PAT cannot train correctly.

    A config asks for PAT when its ``model`` holds a ``PATLoss`` or its
    ``custom_hooks`` a ``PrevPredictionHook``. Then the model needs a decode
    head, every head in ``model.decode_head`` and ``model.auxiliary_head``
    (a dict or a list of dicts) must be registered as a subclass of MMSeg's
    ``BaseDecodeHead``, and a head with ``PATLoss`` must be one whose loss
    learns the semantic labels per pixel (:data:`REFUSED_HEADS`,
    :data:`LOSS_LISTS`, :data:`NESTED_HEADS` say which are not, or how).
    A head type that the registry does not know is left to the model's
    build, which reports it. Configs that do not ask for PAT pass.

    Args:
        cfg (Config | dict): The whole config (``model``, ``custom_hooks``).

    Raises:
        ValueError: Naming the head (e.g. ``model.auxiliary_head[0], a
            STDCHead``), why PAT does not apply and what to do.
    """
    model = cfg.get('model') or {}
    hooks = cfg.get('custom_hooks') or []
    if (PAT_LOSS not in _types_in(model)
            and PAT_HOOK not in _types_in(hooks)):
        return
    heads = list(head_configs(model))
    if not heads:
        raise ValueError(
            f'The config asks for PAT ({PAT_LOSS} or {PAT_HOOK}) but its '
            f'model (type {model.get("type")!r}) has no decode_head: PAT '
            "reweights the per-pixel loss (loss_decode) of MMSeg's decode "
            'heads.')
    for where, head in heads:
        cls = _registered_class(head.get('type'))
        if cls is None:
            continue
        if not issubclass(cls, BaseDecodeHead):
            raise ValueError(
                f'PAT does not apply to model.{where}, a {cls.__name__}: PAT '
                "reweights the per-pixel decode loss (loss_decode) of MMSeg's "
                'decode heads, the subclasses of BaseDecodeHead, and '
                f'{cls.__name__} is not one. MaskFormer and Mask2Former heads '
                'compute mask-classification set losses (queries matched to '
                'masks: classification, mask and dice losses), not a '
                f'per-pixel decode loss. Remove {PAT_LOSS} and {PAT_HOOK} '
                'from this config, or use a model with a per-pixel decode '
                'head (FCN, PSPNet, DeepLabV3+, UPerNet, SegFormer, OCRNet, '
                '...).')
        _check_head(where, cls, head)


def _check_head(where: str, cls: type, head: Mapping) -> None:
    """Refuse PATLoss in a head whose loss it cannot serve as configured."""
    losses = head.get('loss_decode')
    if PAT_LOSS not in _types_in(losses):
        return
    kind = _kind(cls)
    name = f'model.{where}, a {cls.__name__}'
    if kind in REFUSED_HEADS:
        raise ValueError(
            f'PAT does not apply to {name}: {REFUSED_HEADS[kind]}. Remove '
            f'{PAT_LOSS} from model.{where}.loss_decode.')
    if kind in NESTED_HEADS:
        raise ValueError(
            f'{name}, does not use its own loss_decode: its losses are those '
            f'of model.{where}.{NESTED_HEADS[kind]}. Put loss_decode='
            f"dict(type='{PAT_LOSS}') there instead.")
    if kind in LOSS_LISTS:
        count = LOSS_LISTS[kind]
        if not isinstance(losses, (list, tuple)) or len(losses) != count:
            raise ValueError(
                f'{name}, indexes loss_decode as a list of {count} losses; '
                f'give model.{where}.loss_decode as a list of {count}, e.g. '
                f"[dict(type='{PAT_LOSS}')] * {count} with the loss_weight "
                'of each entry the config had.')
    if kind in POINT_HEADS:
        print_log(
            f'{name}: its loss sees point-sampled logits, where the '
            "prediction memory cannot be read; PATLoss uses the current "
            "confidence there (as confidence='current'), the memory is "
            'written from the last per-pixel decode head.',
            logger='current')
