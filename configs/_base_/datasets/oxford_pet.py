# Oxford-IIIT Pet trimaps as 3 classes (pet, background, border), as in the
# PAT paper: train on trainval (3680 images), evaluate on test (3669).
# Lay out the official archives with tools/dataset_converters/oxford_pet.py.
dataset_type = 'OxfordPetDataset'
data_root = 'data/oxford_pet'
# The images are about 500 x 375: resized to fit 512 x 512, then scaled by
# 0.5-2 and cropped to 512 x 512.
img_scale = (512, 512)
crop_size = (512, 512)
data_prefix = dict(img_path='images', seg_map_path='annotations/trimaps')
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
        ann_file='annotations/trainval.txt',
        data_prefix=data_prefix,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/test.txt',
        data_prefix=data_prefix,
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
