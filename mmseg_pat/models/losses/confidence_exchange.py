"""What PrevPredictionHook and PATLoss hand each other in one iteration.

One direction each way: the hook puts the batch's stored confidences in
(``previous``), the loss of the head whose prediction is the model's (the
``writer``) leaves its current confidences out (``current`` with the
``label`` they belong to). Lifetime: one training iteration, from the
hook's ``before_train_iter`` to its ``after_train_iter``; statistics for
the logs are the hook's business, not this object's.
"""
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn


class ConfidenceExchange:
    """One iteration's hand-over between the memory hook and the losses.

    Args:
        previous (list[Tensor]): Stored confidence of each image's pixels,
            one (h, w) map per image of the batch (the crop before the
            batch is padded), on the device of the model; negative where
            nothing is stored.
        writer (nn.Module): The loss whose current confidences are stored.
        keep (str): Which of the writer's calls in the iteration is the
            model's prediction: ``'last'`` (one call, or the final stage of
            an iterative head such as K-Net's) or ``'first'`` (DANet's head
            calls its loss on the fused map first, then on each branch).
            Default: ``'last'``.

    Attributes:
        current (Tensor | None): Set by the writer's forward: its detached
            current true-class confidence (N, H, W), -1 at ignored pixels.
        label (Tensor | None): The labels (N, H, W) ``current`` belongs to.
    """

    def __init__(self,
                 previous: Sequence[Tensor],
                 writer: nn.Module,
                 keep: str = 'last'):
        if keep not in ('first', 'last'):
            raise ValueError(f"keep must be 'first' or 'last', got {keep!r}")
        self.previous: List[Tensor] = list(previous)
        self.writer = writer
        self.keep = keep
        self.current: Optional[Tensor] = None
        self.label: Optional[Tensor] = None
        self._padded: Optional[Tensor] = None

    def previous_batch(self, shape: Sequence[int]) -> Optional[Tensor]:
        """The stored confidences as one (N, H, W) map, padded with -1 at
        the bottom and right as MMSeg pads the batch's labels.

        Returns None where the maps cannot belong to labels of that shape:
        labels that are not (N, H, W) maps (e.g. PointRend's point head
        computes its loss on (N, P) sampled points), or of another batch.
        """
        if len(shape) != 3:
            return None
        n, height, width = shape
        if self._padded is not None and tuple(self._padded.shape) == tuple(
                shape):
            return self._padded
        if len(self.previous) != n or any(
                m.shape[-2] > height or m.shape[-1] > width
                for m in self.previous):
            return None
        if all(tuple(m.shape[-2:]) == (height, width) for m in self.previous):
            padded = torch.stack(self.previous)  # crops of the batch's size
        else:
            padded = torch.full((n, height, width), -1.0,
                                device=self.previous[0].device)
            for i, m in enumerate(self.previous):
                padded[i, :m.shape[-2], :m.shape[-1]] = m
        self._padded = padded
        return padded

    def record(self, loss: nn.Module, current: Tensor, label: Tensor) -> None:
        """Keep the writer's current confidences; calls from other losses,
        and maps that are not (N, H, W), are ignored. Nothing is computed
        or read back here.

        Args:
            loss (nn.Module): The loss calling.
            current (Tensor): Detached confidences, -1 where ignored.
            label (Tensor): The labels, same shape.
        """
        if loss is not self.writer or current.dim() != 3 or (
                self.keep == 'first' and self.current is not None):
            return
        self.current = current
        self.label = label
