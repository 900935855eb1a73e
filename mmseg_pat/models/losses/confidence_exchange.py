"""What PrevPredictionHook and PATLoss hand each other in one iteration.

Lifetime: one training iteration. ``PrevPredictionHook.before_train_iter``
makes a :class:`ConfidenceExchange` holding the batch's stored confidences
and sets it as ``exchange`` on every ``PATLoss`` of the model; each loss
reads ``previous`` in its forward; the ``writer`` (the loss of the head
whose prediction is the model's, i.e. the last decode head) records its
current confidences; ``after_train_iter`` writes those back to the memory
and takes the exchange off the losses again.
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

    Attributes:
        current (Tensor | None): Set by the writer's forward: its detached
            current true-class confidence (N, H, W), -1 at ignored pixels.
        known_and_valid (Tensor | None): Set by the writer: int64 (2, ), the
            valid pixels that had a stored confidence, and all valid pixels.
        class_sums (Tensor | None), class_pixels (Tensor | None): Set by the
            writer: per class, the sum of the current confidences of its
            valid pixels and their number (C, ).
    """

    def __init__(self, previous: Sequence[Tensor], writer: nn.Module):
        self.previous: List[Tensor] = list(previous)
        self.writer = writer
        self.current: Optional[Tensor] = None
        self.known_and_valid: Optional[Tensor] = None
        self.class_sums: Optional[Tensor] = None
        self.class_pixels: Optional[Tensor] = None
        self._padded: Optional[Tensor] = None

    def previous_batch(self, shape: Sequence[int]) -> Optional[Tensor]:
        """The stored confidences as one (N, H, W) map, padded with -1 at
        the bottom and right as MMSeg pads the batch's labels.

        Returns None if the maps cannot belong to a batch of that shape
        (then the loss is not looking at this iteration's batch).
        """
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

    def record(self, loss: nn.Module, current: Tensor, label: Tensor,
               previous: Optional[Tensor], num_classes: int) -> None:
        """Keep the writer's current confidences and their statistics.

        Calls from other losses are ignored. Everything stays on the
        device: no value is read back here.

        Args:
            loss (nn.Module): The loss calling.
            current (Tensor): Detached (N, H, W) confidences, -1 where
                ignored.
            label (Tensor): (N, H, W) labels.
            previous (Tensor | None): The stored confidences it used.
            num_classes (int): Number of classes C.
        """
        if loss is not self.writer:
            return
        self.current = current
        valid = current >= 0
        known = valid & (previous >= 0) if previous is not None else (
            torch.zeros_like(valid))
        self.known_and_valid = torch.stack([known.sum(), valid.sum()])
        # the extra last bin collects the ignored pixels
        index = torch.where(valid, label.long(), num_classes).reshape(-1)
        bins = current.new_zeros(num_classes + 1)
        self.class_sums = bins.scatter_add(
            0, index, current.clamp(min=0).reshape(-1))[:num_classes]
        self.class_pixels = bins.scatter_add(
            0, index, valid.reshape(-1).float())[:num_classes]
