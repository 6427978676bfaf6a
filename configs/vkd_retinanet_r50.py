# VkD: RetinaNet-R50-FPN 1x student (36.5 box AP in mmdet's zoo) distilled from a
# frozen RetinaNet-X101-64x4d-FPN 1x teacher (41.0 AP), on every backbone stage
# and every FPN level.
# Published figures to compare with: PKD with an FCOS-X101 teacher gives this
# student 40.3 AP at 1x (MMRazor's PKD README). VkD's own detection results
# are on ViDT (paper, Table 5), not on RetinaNet.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['vkd_mmdet'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='VkDDistiller',
    student={{_base_.model}},
    teacher='mmdet::retinanet/retinanet_x101-64x4d_fpn_1x_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_x101_64x4d_fpn_1x_coco/retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth',  # noqa: E501
    taps=['backbone', 'neck'])

custom_hooks = [
    dict(type='DistillWeightScheduleHook', warmup_iters=500),
    dict(type='OrthogonalityLoggerHook'),
    dict(type='StudentExportHook'),
]
