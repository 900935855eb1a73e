# SegFormer (MiT-B0) on Oxford-IIIT Pet: everything but the loss.
# configs/{pat,ce,blv}/segformer_oxfordpet.py differ only in the loss.
_base_ = ['./segformer.py', '../datasets/oxford_pet.py']
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=3))
