"""Log how far each tap's projectors are from orthogonal."""
from typing import Optional

from mmengine.hooks import Hook, LoggerHook
from mmengine.model import is_model_wrapper

from mmdet.registry import HOOKS


@HOOKS.register_module()
class OrthogonalityLoggerHook(Hook):
    """Writes ``vkd_orth_err_<tap>`` = max over the tap's projectors of
    ``max|WᵀW - I|`` to the message hub, so mmengine's logger and visualizer
    show it next to the ``loss_vkd_*`` entries.

    Args:
        interval: iterations between measurements; ``None`` follows the
            ``LoggerHook`` interval (computing ``WᵀW`` every iteration is wasted
            work for a 2048x512 projector).
    """

    priority = 'NORMAL'  # before LoggerHook (BELOW_NORMAL), so the value is fresh

    def __init__(self, interval: Optional[int] = None):
        self.interval = interval

    def before_train(self, runner) -> None:
        if self.interval is None:
            loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]
            self.interval = loggers[0].interval if loggers else 50

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not (self.every_n_train_iters(runner, self.interval) or runner.iter == 0
                or self.end_of_epoch(runner.train_dataloader, batch_idx)):
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        per_tap = {}
        for name, projector in model.projectors().items():
            if hasattr(projector, 'orthogonality_error'):
                tap = name.rsplit('.', 1)[0]
                per_tap[tap] = max(per_tap.get(tap, 0.0), projector.orthogonality_error())
        for tap, err in per_tap.items():
            runner.message_hub.update_scalar(f'train/vkd_orth_err_{tap}', err)
