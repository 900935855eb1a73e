from .blv import BLVLoss, blv_loss, blv_perturbation, blv_variation_scale
from .confidence_exchange import ConfidenceExchange
from .logit_adjusted import LogitAdjustedLoss, logit_adjusted_loss
from .pat import (PATLoss, check_pat_options, pat_confidence,
                  pat_log_weight_map, pat_log_weights, pat_loss,
                  pat_loss_from_cross_entropy, pat_weights,
                  true_class_confidence)
from .pixel_loss import CHECK_INTERVAL, check_labels, pixel_cross_entropy
from .softmax_focal import SoftmaxFocalLoss, softmax_focal_loss
from .weighted_cross_entropy_loss import (WEIGHTING_METHODS,
                                          WeightedCrossEntropyLoss,
                                          class_weights_from_counts,
                                          weighted_cross_entropy)

__all__ = [
    'ConfidenceExchange', 'PATLoss', 'CHECK_INTERVAL', 'check_labels',
    'check_pat_options', 'pat_confidence', 'pat_log_weight_map',
    'pat_log_weights', 'pat_loss', 'pat_loss_from_cross_entropy',
    'pat_weights', 'pixel_cross_entropy', 'true_class_confidence', 'BLVLoss',
    'blv_loss', 'blv_perturbation', 'blv_variation_scale',
    'LogitAdjustedLoss', 'logit_adjusted_loss', 'SoftmaxFocalLoss',
    'softmax_focal_loss', 'WEIGHTING_METHODS', 'WeightedCrossEntropyLoss',
    'class_weights_from_counts', 'weighted_cross_entropy'
]
