# The demo's baseline: the PAT demo with MMSeg's cross-entropy instead.
_base_ = './segformer_long_tail_shapes_pat.py'
model = dict(
    decode_head=dict(
        loss_decode=dict(
            _delete_=True,
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0)))
custom_hooks = [
    dict(type='ClassCountsHook'),
    dict(type='PlainCheckpointHook'),
]
