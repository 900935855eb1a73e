# Baseline: MMSeg's cross-entropy, as in the experiment base.
_base_ = '../_base_/experiments/deeplabv3plus_oxfordpet.py'
