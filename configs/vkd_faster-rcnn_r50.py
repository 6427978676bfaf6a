# VkD: Faster R-CNN R50-FPN 1x student (37.4 AP) from a Faster R-CNN R101-FPN 1x
# teacher (39.4 AP), on every FPN level.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['vkd_mmdet'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='VkDDistiller',
    student={{_base_.model}},
    teacher='mmdet::faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r101_fpn_1x_coco/faster_rcnn_r101_fpn_1x_coco_20200130-f513f705.pth',  # noqa: E501
    taps=['neck'])
custom_hooks = [dict(type='OrthogonalityLoggerHook'), dict(type='StudentExportHook')]
