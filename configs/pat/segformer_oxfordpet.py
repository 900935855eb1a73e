# PAT: PATLoss on every head, with the memory of previous predictions.
_base_ = '../_base_/experiments/segformer_oxfordpet.py'
model = dict(decode_head=dict(loss_decode=dict(_delete_=True, type='PATLoss')))
custom_hooks = [
    dict(type='ClassCountsHook'),
    dict(type='PrevPredictionHook', grid=(128, 128)),
]
