from .directory_lock import DirectoryInUseError, DirectoryLock
from .hooks import PrevPredictionHook
from .prediction_memory import (MemoryMismatchError, MemorySnapshotError,
                                PredictionMemory)

__all__ = [
    'DirectoryInUseError', 'DirectoryLock', 'MemoryMismatchError',
    'MemorySnapshotError', 'PredictionMemory', 'PrevPredictionHook'
]
