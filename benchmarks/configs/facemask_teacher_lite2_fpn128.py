# Benchmark teacher: RetinaNet with an ImageNet-pretrained EfficientNet-Lite2
# backbone (C3-C5: 48/120/352 channels), a 128-channel FPN and the standard
# 4-conv head at 128 channels.
_base_ = './_facemask_retinanet.py'
model = dict(
    backbone=dict(arch='efficientnet-lite2'),
    neck=dict(in_channels=[48, 120, 352], out_channels=128),
    bbox_head=dict(in_channels=128, feat_channels=128, stacked_convs=4))
