from .default_hooks import add_vkd_hooks  # noqa: F401  (a config helper, not a hook)
from .distill_weight_schedule_hook import DistillWeightScheduleHook
from .orthogonality_logger_hook import OrthogonalityLoggerHook
from .resume_check_hook import ResumeCheckHook
from .student_export_hook import StudentExportHook
from .teacher_check_hook import TeacherCheckHook

# The hook classes (export.py drops them from a plain student's config).
__all__ = ['DistillWeightScheduleHook', 'OrthogonalityLoggerHook', 'ResumeCheckHook',
           'StudentExportHook', 'TeacherCheckHook']
