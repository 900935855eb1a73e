from .prev_prediction_hook import PrevPredictionHook

__all__ = ['PrevPredictionHook']
