# Demo VkD run: the student config beside this file, distilled on every FPN level
# from the demo teacher (trained, and copied to teacher_ckpt, by `python tools/demo.py`).
_base_ = './shapes_student_r18_fpn32.py'
custom_imports = dict(imports=['vkd_mmdet'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='VkDDistiller',
    student={{_base_.model}},
    teacher='configs/demo/shapes_teacher_r34_fpn64.py',
    teacher_ckpt='work_dirs/demo/default/teacher.pth',
    taps=['neck'])

custom_hooks = [dict(type='DistillWeightScheduleHook', warmup_iters=50),
                dict(type='StudentExportHook')]
