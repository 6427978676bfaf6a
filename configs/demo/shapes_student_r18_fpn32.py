# Demo student, trained without distillation: RetinaNet-R18 with a 32-channel FPN
# and head (its FPN maps embed semi-orthogonally into the teacher's 64 channels).
_base_ = './_shapes_retinanet.py'
model = dict(
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32))
