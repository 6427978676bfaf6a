"""Evaluate the teacher on the val set before the first epoch, and say what it scored."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet.registry import HOOKS

from ..errors import ConfigError
from ..teacher_check import (TeacherCheck, check_student_map, resize_scales, run_teacher_check,
                             teacher_view)


@HOOKS.register_module()
class TeacherCheckHook(Hook):
    """Before training, the distiller's teacher is evaluated on the val set with the
    config's ``val_evaluator``, and the log says, at the top of the run::

        teacher: 28.6 coco/bbox_mAP on your val set (8.1M parameters; the student 3.9M)

    with a warning when the score is near zero (weights not loaded, other classes or
    preprocessing) or not clearly above ``student_map``. The scores go into the run's
    scalars as ``teacher/<metric>`` (step 0). The teacher sees the val images as it
    sees the training batch: resized by ``teacher_input_scale``, and, with
    ``student_input_scale``, loaded at the training batch's resolution (the val
    pipeline's resize divided by the student's factor).

    ``tools/train.py`` adds this hook to every distillation; ``VkDDistiller(
    check_teacher=False)`` turns it off, ``check_teacher=dict(student_map=0.25)``
    sets its options. Costs one validation pass of the teacher (its time is logged).

    Args:
        student_map: the student's metric without distillation (0-1), if known.
        min_map: a teacher below this is taken as broken (default 0.01, 1 mAP).
        margin: how far above ``student_map`` counts as clearly better (0.02).
    """

    priority = 'LOW'  # after the runner's own set-up hooks; before the first iteration

    def __init__(self, student_map: Optional[float] = None, min_map: float = 0.01,
                 margin: float = 0.02):
        self.options = dict(student_map=student_map, min_map=min_map, margin=margin)
        self.result: Optional[TeacherCheck] = None

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        setting = getattr(model, 'check_teacher', None)
        if setting is None or getattr(model, 'teacher', None) is None:
            runner.logger.warning('TeacherCheckHook: the model is not a VkDDistiller; '
                                  'there is no teacher to check')
            return
        self._check_student_val_scale(runner, model)
        if setting is False:
            runner.logger.info('TeacherCheckHook: off (check_teacher=False): the teacher '
                               'is not evaluated before training')
            return
        options = dict(self.options, **(dict(setting) if not isinstance(setting, bool) else {}))
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ConfigError(f'VkDDistiller: check_teacher has unknown option(s) {unknown}; '
                              f'it takes {sorted(self.options)}')
        try:  # before the val pass, not after it
            check_student_map(options['student_map'])
        except ValueError as exc:
            raise ConfigError(f'VkDDistiller: check_teacher: {exc}') from None
        if runner.val_loop is None:
            runner.logger.warning('TeacherCheckHook: the config has no val_dataloader / '
                                  'val_evaluator, so the teacher is not checked')
            return
        cfg, input_scale, note = teacher_view(runner.cfg.val_dataloader,
                                              model.teacher_input_scale,
                                              model.student_input_scale)
        dataloader = (runner.val_loop.dataloader if cfg is None
                      else runner.build_dataloader(cfg, seed=runner.seed))
        self.result = run_teacher_check(
            model.teacher, model.student, model.data_preprocessor, dataloader,
            runner.val_loop.evaluator, input_scale=input_scale,
            teacher_meta=model.teacher_meta, teacher_ckpt=model.teacher_ckpt, note=note,
            **options)
        log = runner.logger.warning if self.result.level == 'warning' else runner.logger.info
        log(f'TeacherCheckHook: {self.result.message}')
        if self.result.metrics:
            runner.visualizer.add_scalars(
                {f'teacher/{k}': v for k, v in self.result.metrics.items()
                 if isinstance(v, (int, float))}, step=0)

    @staticmethod
    def _check_student_val_scale(runner, model) -> None:
        """With ``student_input_scale`` the student trains on the batch resized; a val
        pipeline that loads at the training resolution validates it elsewhere."""
        if model.student_input_scale == 1.0:
            return
        train = resize_scales(runner.cfg.get('train_dataloader'))
        val = resize_scales(runner.cfg.get('val_dataloader'))
        if train and val and train[-1] == val[-1]:
            runner.logger.warning(
                f'TeacherCheckHook: student_input_scale={model.student_input_scale:g}: the '
                f'student trains on the batch resized {model.student_input_scale:g}x, but '
                f'the val pipeline resizes to {val[-1]}, as the training pipeline does, so '
                f'it is validated (and its best checkpoint chosen) at another resolution '
                f'than it trains and deploys at. Give the val and test pipelines the '
                f"student's resolution.")
