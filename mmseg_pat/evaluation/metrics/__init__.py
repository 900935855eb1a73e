from .long_tail_iou_metric import LongTailIoUMetric

__all__ = ['LongTailIoUMetric']
