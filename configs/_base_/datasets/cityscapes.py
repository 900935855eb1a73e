# Cityscapes (19 classes, *_gtFine_labelTrainIds.png) with MMSeg's
# CityscapesDataset, as MMSeg's own base, plus the pixel origins that
# PrevPredictionHook needs and the long-tail metric. Prepare the data with
# tools/dataset_converters/cityscapes.py.
_base_ = 'mmseg::_base_/datasets/cityscapes.py'
crop_size = (512, 1024)
# The pixel origins let PrevPredictionHook map augmented crops back onto
# each image; they change nothing else, so configs that differ only in the
# loss share this pipeline.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='LoadPixelOrigins'),
    dict(
        type='RandomResize',
        scale=(2048, 1024),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputsWithOrigins')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
# MMSeg's aAcc / mIoU / mAcc plus head / body / tail groups by training
# pixel frequency. ClassCountsHook fills in class_counts='train_set' during
# the run (counted once, cached in the work dir, recorded in checkpoints);
# PlainCheckpointHook writes checkpoints that torch >= 2.6 loads safely.
val_evaluator = dict(
    type='LongTailIoUMetric', class_counts='train_set', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
custom_hooks = [
    dict(type='ClassCountsHook'),
    dict(type='PlainCheckpointHook'),
]
