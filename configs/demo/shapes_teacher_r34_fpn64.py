# Demo teacher: RetinaNet-R34 with a 64-channel FPN and head, from scratch on the
# shapes set, trained longer than the students.
_base_ = './_shapes_retinanet.py'
model = dict(
    backbone=dict(depth=34),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64))
