from .directory_lock import DirectoryInUseError, DirectoryLock
from .hooks import ClassCountsHook, PlainCheckpointHook, PrevPredictionHook
from .prediction_memory import (MemoryMismatchError, MemorySnapshotError,
                                PredictionMemory)

__all__ = [
    'ClassCountsHook', 'DirectoryInUseError', 'DirectoryLock',
    'MemoryMismatchError', 'MemorySnapshotError', 'PredictionMemory',
    'PlainCheckpointHook', 'PrevPredictionHook'
]
