# VkD across families and backbone libraries: RetinaNet-R50-FPN 1x student (36.5
# box AP in mmdet's zoo) distilled from a frozen Mask R-CNN ConvNeXt-T 3x teacher
# (46.2 box AP, 41.7 mask AP), whose backbone comes from mmpretrain.
# Only the FPN is tapped: both necks give 256 channels, but the teacher's levels
# have strides 4-64 (P2-P6) and the student's 8-128 (P3-P7). Levels are paired by
# stride, so P3-P6 are distilled and the teacher's P2 and the student's P7 are
# left out (the training log lists the pairs; `tools/inspect_distill.py` shows
# them without training). The backbones are not tapped: ConvNeXt-T's stages
# (96-768 channels) are narrower than ResNet-50's (256-2048).
# The teacher config imports `mmpretrain.models` itself (its `custom_imports`).
# The student, schedule and hooks are configs/vkd_retinanet_r50.py's.
_base_ = './vkd_retinanet_r50.py'

model = dict(
    teacher='mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v2.0/convnext/mask_rcnn_convnext-t_p4_w7_fpn_fp16_ms-crop_3x_coco/mask_rcnn_convnext-t_p4_w7_fpn_fp16_ms-crop_3x_coco_20220426_154953-050731f4.pth',  # noqa: E501
    taps=['neck'])
