from .class_counts_hook import ClassCountsHook
from .plain_checkpoint_hook import PlainCheckpointHook
from .prev_prediction_hook import PrevPredictionHook

__all__ = ['ClassCountsHook', 'PlainCheckpointHook', 'PrevPredictionHook']
