from .distill_weight_schedule_hook import DistillWeightScheduleHook
from .orthogonality_logger_hook import OrthogonalityLoggerHook
from .student_export_hook import StudentExportHook

__all__ = ['DistillWeightScheduleHook', 'OrthogonalityLoggerHook', 'StudentExportHook']
