from .blv_loss import BLVLoss, blv_loss, blv_perturbation, blv_variation_scale
from .confidence_exchange import ConfidenceExchange
from .logit_adjusted_loss import LogitAdjustedLoss, logit_adjusted_loss
from .pat_loss import (PATLoss, check_labels, pat_log_weights, pat_loss,
                       pat_weights)
from .softmax_focal_loss import SoftmaxFocalLoss, softmax_focal_loss
from .weighted_cross_entropy_loss import (WEIGHTING_METHODS,
                                          WeightedCrossEntropyLoss,
                                          class_weights_from_counts,
                                          weighted_cross_entropy)

__all__ = [
    'ConfidenceExchange', 'PATLoss', 'check_labels', 'pat_log_weights',
    'pat_loss', 'pat_weights',
    'BLVLoss', 'blv_loss', 'blv_perturbation', 'blv_variation_scale',
    'LogitAdjustedLoss', 'logit_adjusted_loss', 'SoftmaxFocalLoss',
    'softmax_focal_loss', 'WEIGHTING_METHODS', 'WeightedCrossEntropyLoss',
    'class_weights_from_counts', 'weighted_cross_entropy'
]
