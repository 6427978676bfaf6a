# VkD: DINO-4scale R50 12e student (49.0 box AP in mmdet's zoo) from a DINO-5scale
# Swin-L 12e teacher (57.2 AP), on the neck levels both have. The teacher's neck
# gives 5 levels (strides 4-64), the student's 4 (strides 8-64): levels are paired
# by stride, so the teacher's stride-4 level is left out (the log lists the pairs).
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['vkd_mmdet'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='VkDDistiller',
    student={{_base_.model}},
    teacher='mmdet::dino/dino-5scale_swin-l_8xb2-12e_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v3.0/dino/dino-5scale_swin-l_8xb2-12e_coco/dino-5scale_swin-l_8xb2-12e_coco_20230228_072924-a654145f.pth',  # noqa: E501
    taps=['neck'])
