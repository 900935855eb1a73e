# The demo: a short PAT training of SegFormer-B0 (random init) on the
# generated long-tailed shapes, ending with MMSeg's evaluation report and
# its head / body / tail rows. `make demo` trains it and its cross-entropy
# twin (segformer_long_tail_shapes_ce.py) through
# tools/analysis/loss_study.py --preset demo.
_base_ = [
    'mmseg::_base_/models/segformer_mit-b0.py',
    '../_base_/datasets/long_tail_shapes.py',
    '../_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmseg_pat'], allow_failed_imports=False)

norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(size=(64, 64))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(init_cfg=None),
    decode_head=dict(
        num_classes=6,
        norm_cfg=norm_cfg,
        loss_decode=dict(type='PATLoss', _delete_=True)))
# PAT's confidences of previous visits (the dataset base's train pipeline
# carries the pixel origins the hook needs); every 200 iterations a picture
# of image, label, stored confidences and PAT's weights lands in
# <work_dir>/<time>/vis_data/vis_image/prev_prediction_memory_<iter>.png.
custom_hooks = [
    dict(type='ClassCountsHook'),
    dict(type='PrevPredictionHook', grid=(64, 64), vis_interval=200),
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(
        type='PolyLR', eta_min=0.0, power=1.0, begin=0, end=600,
        by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=600, val_interval=600)
val_cfg = dict(type='ValLoop')
# MMSeg's aAcc / mIoU / mAcc plus head / body / tail groups by training
# pixel frequency (ClassCountsHook counts the training set once).
val_evaluator = dict(
    type='LongTailIoUMetric', class_counts='train_set', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=600),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
