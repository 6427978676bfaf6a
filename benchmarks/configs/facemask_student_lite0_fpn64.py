# Benchmark student: RetinaNet with an ImageNet-pretrained EfficientNet-Lite0
# backbone (C3-C5: 40/112/320 channels), a 64-channel FPN and a 2-conv 64-channel
# head. Its FPN maps embed semi-orthogonally into the teacher's 128 channels.
_base_ = './_facemask_retinanet.py'
model = dict(
    backbone=dict(arch='efficientnet-lite0'),
    neck=dict(in_channels=[40, 112, 320], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64, stacked_convs=2))
