# SegFormer (MiT-B0) on Cityscapes: everything but the loss.
# configs/{pat,ce,blv}/segformer_cityscapes.py differ only in the loss.
# MMSeg's SegFormer Cityscapes recipe trains 160k iterations.
_base_ = ['./segformer.py', '../datasets/cityscapes.py']
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=19))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR',
         eta_min=0.0,
         power=1.0,
         begin=1500,
         end=160000,
         by_epoch=False)
]
train_cfg = dict(max_iters=160000, val_interval=16000)
default_hooks = dict(checkpoint=dict(interval=16000))
