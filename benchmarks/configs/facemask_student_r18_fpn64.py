# Benchmark student: RetinaNet with a ResNet-18 backbone trained FROM SCRATCH
# (no ImageNet weights for ResNet are available offline), C3-C5: 128/256/512
# channels, a 64-channel FPN and a 2-conv 64-channel head. Its FPN maps embed
# semi-orthogonally into the teacher's 128 channels.
# It keeps the base config's input normalisation (the teacher's, mean 127 / std
# 128): a distiller feeds both models the student's preprocessed batch.
_base_ = './_facemask_retinanet.py'
model = dict(
    backbone=dict(_delete_=True, type='ResNet', depth=18, num_stages=4, out_indices=(1, 2, 3),
                  # from scratch: train every stage and keep BN statistics live
                  frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False, style='pytorch', init_cfg=None),
    neck=dict(in_channels=[128, 256, 512], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64, stacked_convs=2))
