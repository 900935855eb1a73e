# PAT with rare-class sampling (DAFormer's RCS, Hoyer et al., CVPR 2022):
# each training image is drawn for a class c chosen with probability
# proportional to exp((1 - f_c) / T), then among the images that hold it.
# The loss, its hook and the evaluation are those of configs/pat/.
_base_ = '../pat/segformer_cityscapes.py'
# the sampler's stream follows the seed: a resumed run draws the images the
# uninterrupted one would have drawn only with a fixed seed
randomness = dict(seed=0)
train_dataloader = dict(
    sampler=dict(
        _delete_=True,
        type='RareClassSampler',
        temperature=0.01,
        # a class counts in an image from 0.15% of its labelled pixels
        # (DAFormer's 3000 pixels of a 2-megapixel label map)
        min_pixels=0.0015))
