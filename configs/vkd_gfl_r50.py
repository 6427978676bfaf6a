# VkD: GFL R50-FPN 1x student (40.2 AP) from a GFL R101-FPN multi-scale 2x
# teacher (44.7 AP), on every FPN level.
_base_ = 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['vkd_mmdet'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='VkDDistiller',
    student={{_base_.model}},
    teacher='mmdet::gfl/gfl_r101_fpn_ms-2x_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v2.0/gfl/gfl_r101_fpn_mstrain_2x_coco/gfl_r101_fpn_mstrain_2x_coco_20200629_200126-dd12f847.pth',  # noqa: E501
    taps=['neck'])
custom_hooks = [dict(type='OrthogonalityLoggerHook'), dict(type='StudentExportHook')]
