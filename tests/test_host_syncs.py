"""The losses read nothing back from the device on their training path.

A read (``.item()``, ``bool(tensor)``, ``nonzero``, boolean-mask indexing,
``unique``, ...) is a host synchronisation on a GPU: the CPU waits until
the device has run everything queued, and cannot queue the next kernels
meanwhile. MMSeg's ``CrossEntropyLoss(avg_non_ignore=True)`` makes one per
call (its ``.item()``); the package's losses make none, except the
periodic check of their labels (and of NaN losses), one read on the first
call and every ``CHECK_INTERVAL`` calls. Counted here on the CPU, by the
operators that would wait on a GPU.
"""
import warnings

import pytest
import torch
from mmseg.registry import MODELS
from torch.utils._python_dispatch import TorchDispatchMode

from mmseg_pat.models.losses import ConfidenceExchange, pixel_loss

aten = torch.ops.aten

# Operators that read a value back from the device, or must, to size their
# output.
_SYNC_OPS = {
    aten._local_scalar_dense.default,  # .item(), bool(), float(), if t:
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.bincount.default,
    aten.repeat_interleave.Tensor,
    aten.equal.default,
}
# Indexing with a boolean mask runs nonzero inside the operator.
_MASK_INDEX_OPS = {aten.index.Tensor, aten.index_put.default,
                   aten.index_put_.default, aten._index_put_impl_.default}

COUNTS = [500, 300, 40, 7]
CE = dict(type='CrossEntropyLoss', avg_non_ignore=True)
LOSSES = [
    dict(type='PATLoss'),
    dict(type='PATLoss', confidence='current', homogenize='class'),
    dict(type='PATLoss', homogenize='sqrt', normalize='none'),
    dict(type='WeightedCrossEntropyLoss', class_counts=COUNTS),
    dict(type='WeightedCrossEntropyLoss'),
    dict(type='SoftmaxFocalLoss'),
    dict(type='SoftmaxFocalLoss', gamma=0.5, alpha=[1, 2, 3, 4]),
    dict(type='LogitAdjustedLoss', class_counts=COUNTS),
    dict(type='BLVLoss', class_counts=COUNTS),
    dict(type='SoftmaxFocalLoss', class_counts=COUNTS,
         weighting='effective_number'),
    dict(type='RecallLoss'),
    dict(type='RecallLoss', momentum=0.9),
]
IDS = ['pat', 'pat-current-class', 'pat-sqrt-raw', 'wce-counts', 'wce',
       'focal', 'focal-alpha', 'logit-adjusted', 'blv', 'focal-counts',
       'recall', 'recall-momentum']


class HostSyncCounter(TorchDispatchMode):
    """Counts the operators of a block that would wait on a GPU."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SYNC_OPS or (func in _MASK_INDEX_OPS and any(
                isinstance(i, torch.Tensor) and i.dtype in (torch.bool,
                                                            torch.uint8)
                for i in _indices(args, kwargs))):
            self.count += 1
        return func(*args, **kwargs)


def _indices(args, kwargs):
    indices = kwargs.get('indices', args[1] if len(args) > 1 else ())
    return indices if isinstance(indices, (list, tuple)) else ()


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 8, 8, generator=g, requires_grad=True)
    label = torch.randint(0, 4, (2, 8, 8), generator=g)
    label[:, :2] = 255
    return logits, label


def _build(cfg):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # MMSeg's and PAT's notices
        return MODELS.build(cfg).train()


def syncs_per_call(module, calls, exchange=False):
    """Host syncs of each of ``calls`` training steps (forward and
    backward), the first call of the module included."""
    logits, label = _batch()
    counts = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # PAT without its hook
        for _ in range(calls):
            if exchange:
                module.exchange = ConfidenceExchange(
                    [torch.rand(8, 8), torch.rand(8, 8)], writer=module)
            with HostSyncCounter() as counter:
                module(logits, label, ignore_index=255).backward()
            counts.append(counter.count)
    return counts


def test_the_counter_sees_what_syncs():
    logits, label = _batch()
    reads = [
        lambda: logits.sum().item(),
        lambda: bool((label == 255).any()),
        lambda: logits[:, 0][label == 1],
        lambda: torch.unique(label),
        lambda: torch.nonzero(label),
        lambda: torch.bincount(label.flatten().clamp(max=3)),
    ]
    for read in reads:
        with HostSyncCounter() as counter:
            read()
        assert counter.count == 1
    with HostSyncCounter() as counter:
        logits.masked_fill(label[:, None] == 255, 0).sum().backward()
        torch.zeros(5).scatter_add_(0, label.flatten().clamp(max=4),
                                    torch.ones(label.numel()))
    assert counter.count == 0


def test_mmseg_ce_syncs_once_per_call():
    """The reference: MMSeg's CE reads the number of valid pixels."""
    assert syncs_per_call(_build(CE), 3) == [1, 1, 1]


@pytest.mark.parametrize('cfg', LOSSES, ids=IDS)
def test_no_sync_but_the_periodic_check(cfg, monkeypatch):
    """One read on the first call and every CHECK_INTERVAL calls, none in
    between: never more than MMSeg's CE, which reads on every call."""
    monkeypatch.setattr(pixel_loss, 'CHECK_INTERVAL', 4)  # a short one
    counts = syncs_per_call(_build(cfg), 9)
    assert counts == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    ce = syncs_per_call(_build(CE), 1)[0]
    assert max(counts) <= ce


def test_pat_with_the_hooks_exchange_reads_nothing():
    """The stored maps in, the current confidences out: on the device."""
    counts = syncs_per_call(_build(dict(type='PATLoss')), 4, exchange=True)
    assert counts == [1, 0, 0, 0]


@pytest.mark.parametrize('cfg', LOSSES, ids=IDS)
def test_bad_label_between_checks_still_named_on_cpu(cfg):
    """F.cross_entropy's 'Target 9 is out of bounds' becomes the clear
    error at any call on the CPU, not only at the periodic check."""
    module = _build(cfg)
    logits, label = _batch()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # PAT without its hook
        module(logits, label)  # the first call: the periodic check passes
        label[1, 5, 5] = 9
        with pytest.raises(ValueError,
                           match=r'\[9\] are outside \[0, 4\)'):
            module(logits, label)
