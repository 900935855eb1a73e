from .metrics import LongTailIoUMetric

__all__ = ['LongTailIoUMetric']
