# Baseline: Balancing Logit Variation (CVPR 2023); the training set's class
# counts ('train_set') come from ClassCountsHook (the dataset base's hooks).
_base_ = '../_base_/experiments/segformer_cityscapes.py'
model = dict(decode_head=dict(
    loss_decode=dict(_delete_=True, type='BLVLoss', class_counts='train_set')))
