from .pat_loss import (PATLoss, check_labels, pat_log_weights, pat_loss,
                       pat_weights)

__all__ = [
    'PATLoss', 'check_labels', 'pat_log_weights', 'pat_loss', 'pat_weights'
]
