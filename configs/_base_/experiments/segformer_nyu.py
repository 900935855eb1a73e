# SegFormer (MiT-B0) on NYUv2 (13 classes): everything but the loss.
# configs/{pat,ce,blv}/segformer_nyu.py differ only in the loss.
_base_ = ['./segformer.py', '../datasets/nyu.py']
crop_size = (480, 480)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=13))
