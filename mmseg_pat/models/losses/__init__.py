from .blv import BLVLoss, blv_loss, blv_perturbation, blv_variation_scale
from .confidence_exchange import ConfidenceExchange
from .logit_adjusted import LogitAdjustedLoss, logit_adjusted_loss
from .pat import (PATLoss, check_pat_options, pat_confidence,
                  pat_log_weight_map, pat_log_weights, pat_loss,
                  pat_loss_from_cross_entropy, pat_weights,
                  true_class_confidence)
from .pixel_loss import CHECK_INTERVAL, check_labels, pixel_cross_entropy
from .recall import (RecallLoss, class_recall_counts, recall_loss,
                     updated_recall)
from .softmax_focal import SoftmaxFocalLoss, softmax_focal_loss
from .weighted_cross_entropy_loss import (DEFAULT_BETA, WEIGHTING_METHODS,
                                          ClassWeightsFromCounts,
                                          WeightedCrossEntropyLoss,
                                          check_weighting,
                                          class_weights_from_counts,
                                          effective_number_weights,
                                          weighted_cross_entropy)

__all__ = [
    'ConfidenceExchange', 'PATLoss', 'CHECK_INTERVAL', 'check_labels',
    'check_pat_options', 'pat_confidence', 'pat_log_weight_map',
    'pat_log_weights', 'pat_loss', 'pat_loss_from_cross_entropy',
    'pat_weights', 'pixel_cross_entropy', 'true_class_confidence', 'BLVLoss',
    'blv_loss', 'blv_perturbation', 'blv_variation_scale',
    'LogitAdjustedLoss', 'logit_adjusted_loss', 'RecallLoss',
    'class_recall_counts', 'recall_loss', 'updated_recall',
    'SoftmaxFocalLoss', 'softmax_focal_loss', 'DEFAULT_BETA',
    'WEIGHTING_METHODS', 'ClassWeightsFromCounts', 'WeightedCrossEntropyLoss',
    'check_weighting', 'class_weights_from_counts',
    'effective_number_weights', 'weighted_cross_entropy'
]
