"""IoU metric with head / body / tail summaries for long-tailed datasets.

``docs/method.md``, "Rare classes": classes are split by training pixel
frequency (:func:`~mmseg_pat.utils.class_counts.frequency_groups`:
the most frequent third is the head, the rarest third the tail) and mIoU /
mAcc are reported per group next to MMSeg's aAcc, mIoU and mAcc. The
per-class IoU is returned too, so it reaches the log files.
"""
from typing import Dict, Sequence

import numpy as np
from mmengine.logging import MMLogger, print_log
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS
from prettytable import PrettyTable

from mmseg_pat.utils.class_counts import (FREQUENCY_GROUPS, ClassCounts,
                                          ClassCountsUser, check_num_classes,
                                          frequency_groups)


def _percent_nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN values in percent, NaN if there is none."""
    values = values[~np.isnan(values)]
    return np.round(values.mean() * 100, 2) if values.size else np.nan


@METRICS.register_module()
class LongTailIoUMetric(IoUMetric, ClassCountsUser):
    """MMSeg's IoU metric plus head / body / tail mIoU and mAcc.

    aAcc, mIoU and mAcc (and mDice, mFscore, ... as ``iou_metrics`` asks)
    are exactly those of :class:`mmseg.evaluation.metrics.IoUMetric`. It
    adds ``{head,body,tail}_mIoU`` and ``{head,body,tail}_mAcc``, the
    NaN-ignoring means over each group's classes (NaN for a group none of
    whose classes is in the evaluation set or its predictions), and
    ``IoU.<class name>`` for every class, all in percent like MMSeg's. The
    group table, with a row for all classes, is printed after MMSeg's
    per-class table.

    Args:
        class_counts (Sequence[int] | str): Training pixel counts of the
            classes, the JSON written by
            ``tools/analysis/class_statistics.py``, or ``'train_set'``
            (filled in during the run by ``ClassCountsHook``).
        **kwargs: Arguments of :class:`IoUMetric` (``ignore_index=255``,
            ``iou_metrics=['mIoU']``, ``nan_to_num=None``, ...).
    """

    def __init__(self, class_counts: ClassCounts, **kwargs) -> None:
        super().__init__(**kwargs)
        self.groups = None
        self._init_class_counts(class_counts)

    def _use_class_counts(self, counts: np.ndarray) -> None:
        self.groups = frequency_groups(counts)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Check the class counts against the dataset, then process the
        batch as :meth:`IoUMetric.process` does."""
        check_num_classes(self._require_class_counts(),
                          len(self.dataset_meta['classes']))
        super().process(data_batch, data_samples)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Compute MMSeg's metrics, the group metrics and per-class IoU.

        Args:
            results (list): The processed results of each batch.

        Returns:
            dict[str, float]: The metrics, in percent.
        """
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        areas = [sum(area) for area in zip(*results)]
        per_class = self.total_area_to_metrics(
            *areas, metrics=['mIoU'], nan_to_num=self.nan_to_num)
        class_names = self.dataset_meta['classes']
        total = max(int(self.class_counts.sum()), 1)

        table = PrettyTable()
        table.field_names = ['Group', 'Classes', 'Train pixels %', 'mIoU',
                             'mAcc']
        for group in FREQUENCY_GROUPS:
            index = self.groups[group]
            miou = _percent_nanmean(per_class['IoU'][index])
            macc = _percent_nanmean(per_class['Acc'][index])
            metrics[f'{group}_mIoU'] = miou
            metrics[f'{group}_mAcc'] = macc
            share = np.round(self.class_counts[index].sum() / total * 100, 2)
            table.add_row([group, len(index), share, miou, macc])
        table.add_row([
            'all',
            len(class_names), 100.0,
            _percent_nanmean(per_class['IoU']),
            _percent_nanmean(per_class['Acc'])
        ])
        logger: MMLogger = MMLogger.get_current_instance()
        print_log('head / body / tail results:', logger)
        print_log('\n' + table.get_string(), logger=logger)

        for name, iou in zip(class_names, per_class['IoU']):
            metrics[f'IoU.{name}'] = np.round(iou * 100, 2)
        return metrics
