# NYUv2 labeled set, 13 classes: train on the official train split (795
# frames), evaluate on test (654). Convert nyu_depth_v2_labeled.mat with
# tools/dataset_converters/nyu.py. For the 40 classes, a config that
# inherits this one sets
#   train_dataloader = dict(dataset=dict(type='NYUv2Seg40Dataset',
#       data_prefix=dict(seg_map_path='label40/train')))
# and the same for val_dataloader with 'label40/test'.
dataset_type = 'NYUv2SegDataset'
data_root = 'data/nyu'
# The frames are 640 x 480.
img_scale = (640, 480)
crop_size = (480, 480)
# The pixel origins let PrevPredictionHook map augmented crops back onto
# each image; they change nothing else, so configs that differ only in the
# loss share this pipeline.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='LoadPixelOrigins'),
    dict(
        type='RandomResize',
        scale=img_scale,
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputsWithOrigins')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    # After Resize: the metric compares with the label at its original size.
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='image/train', seg_map_path='label/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='image/test', seg_map_path='label/test'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
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
