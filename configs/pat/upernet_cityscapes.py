# PAT: PATLoss on every head, with the memory of previous predictions.
_base_ = '../_base_/experiments/upernet_cityscapes.py'
model = dict(
    decode_head=dict(loss_decode=dict(_delete_=True, type='PATLoss')),
    auxiliary_head=dict(
        loss_decode=dict(_delete_=True, type='PATLoss', loss_weight=0.4)))
custom_hooks = [
    dict(type='ClassCountsHook'),
    dict(type='PrevPredictionHook', grid=(128, 256)),
]
