# VkD: FCOS R50-caffe GN-head 1x student (36.6 AP) from an FCOS R101-caffe
# GN-head 1x teacher (39.1 AP), on every FPN level. Both use caffe-style
# preprocessing, so the teacher sees inputs normalised as in its own training.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['vkd_mmdet'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='VkDDistiller',
    student={{_base_.model}},
    teacher='mmdet::fcos/fcos_r101-caffe_fpn_gn-head-1x_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v2.0/fcos/fcos_r101_caffe_fpn_gn-head_1x_coco/fcos_r101_caffe_fpn_gn-head_1x_coco-0e37b982.pth',  # noqa: E501
    taps=['neck'])
custom_hooks = [dict(type='OrthogonalityLoggerHook'), dict(type='StudentExportHook')]
