# SegFormer (MiT-B0) with MMSeg's recipe, for the three segformer_<dataset>
# experiment bases: AdamW, 10x learning rate on the head, linear warm-up
# then poly decay over the 40k schedule (Cityscapes stretches it to 160k),
# ImageNet-pretrained MiT-B0 weights.
_base_ = [
    'mmseg::_base_/models/segformer_mit-b0.py',
    '../default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['mmseg_pat'], allow_failed_imports=False)

checkpoint = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/segformer/mit_b0_20220624-7e0fe6dd.pth'  # noqa
optim_wrapper = dict(_delete_=True,
                     type='OptimWrapper',
                     optimizer=dict(type='AdamW',
                                    lr=0.00006,
                                    betas=(0.9, 0.999),
                                    weight_decay=0.01),
                     paramwise_cfg=dict(
                         custom_keys={
                             'pos_block': dict(decay_mult=0.),
                             'norm': dict(decay_mult=0.),
                             'head': dict(lr_mult=10.)
                         }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR',
         eta_min=0.0,
         power=1.0,
         begin=1500,
         end=40000,
         by_epoch=False)
]
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
