# DeepLabV3+ (ResNet-50-D8) on Cityscapes: everything but the loss.
# configs/{pat,ce,blv}/deeplabv3plus_cityscapes.py differ only in the loss.
_base_ = [
    'mmseg::_base_/models/deeplabv3plus_r50-d8.py',
    '../datasets/cityscapes.py',
    '../default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['mmseg_pat'], allow_failed_imports=False)
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor,
             decode_head=dict(num_classes=19),
             auxiliary_head=dict(num_classes=19))
