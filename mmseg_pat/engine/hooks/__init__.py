from .class_counts_hook import ClassCountsHook
from .prev_prediction_hook import PrevPredictionHook
from .trusted_checkpoints_hook import TrustedCheckpointsHook

__all__ = ['ClassCountsHook', 'PrevPredictionHook', 'TrustedCheckpointsHook']
