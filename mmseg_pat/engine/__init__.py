from .hooks import PrevPredictionHook
from .prediction_memory import MemoryMismatchError, PredictionMemory

__all__ = ['MemoryMismatchError', 'PredictionMemory', 'PrevPredictionHook']
