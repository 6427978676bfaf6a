# VkD: RTMDet-tiny student (40.9 box AP in mmdet's zoo) from an RTMDet-s teacher
# (44.5 AP), on the 3 PAFPN levels: 96 -> 128 channels, so the projections have
# orthonormal columns. RTMDet's own EMAHook and PipelineSwitchHook stay in force:
# tools/train.py appends the plugin's hooks to the base config's (so there is no
# `custom_hooks = [...]` here), and the exported student is the EMA student.
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
custom_imports = dict(imports=['vkd_mmdet'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='VkDDistiller',
    student={{_base_.model}},
    teacher='mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v3.0/rtmdet/rtmdet_s_8xb32-300e_coco/rtmdet_s_8xb32-300e_coco_20220905_161602-387a891e.pth',  # noqa: E501
    taps=['neck'])
