# UPerNet (ResNet-50) on NYUv2 (13 classes): everything but the loss.
# configs/{pat,ce,blv}/upernet_nyu.py differ only in the loss.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    '../datasets/nyu.py',
    '../default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['mmseg_pat'], allow_failed_imports=False)
crop_size = (480, 480)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor,
             decode_head=dict(num_classes=13),
             auxiliary_head=dict(num_classes=13))
