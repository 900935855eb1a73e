"""Where a segmentor keeps its decode heads, in a config and when built.

MMSeg segmentors hold their heads under ``decode_head`` and
``auxiliary_head``, each one head or a list of heads (a cascade such as
OCRNet, BiSeNetV2's auxiliary heads); a built model may sit inside a
wrapper (DDP). Every part of the package that walks the heads does it here.
"""
from typing import Iterator, Mapping, Tuple

from mmengine.model import is_model_wrapper
from torch import nn

#: The segmentor keys that hold decode heads.
HEAD_KEYS = ('decode_head', 'auxiliary_head')


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a wrapper such as MMDistributedDataParallel."""
    return model.module if is_model_wrapper(model) else model


def _named(key: str, heads) -> Iterator[Tuple[str, object]]:
    if isinstance(heads, (list, tuple, nn.ModuleList)):
        for i, head in enumerate(heads):
            yield f'{key}[{i}]', head
    elif heads:
        yield key, heads


def head_configs(model_cfg: Mapping) -> Iterator[Tuple[str, Mapping]]:
    """``('decode_head[1]', cfg)`` for every decode, then auxiliary, head
    of a model config."""
    for key in HEAD_KEYS:
        yield from _named(key, model_cfg.get(key))


def head_modules(model: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    """``('decode_head[1]', module)`` for every decode, then auxiliary,
    head of a built model (wrapped or not)."""
    model = unwrap(model)
    for key in HEAD_KEYS:
        yield from _named(key, getattr(model, key, None))
