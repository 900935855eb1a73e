# UPerNet (ResNet-50) on Oxford-IIIT Pet: everything but the loss.
# configs/{pat,ce,blv}/upernet_oxfordpet.py differ only in the loss.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    '../datasets/oxford_pet.py',
    '../default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['mmseg_pat'], allow_failed_imports=False)
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor,
             decode_head=dict(num_classes=3),
             auxiliary_head=dict(num_classes=3))
