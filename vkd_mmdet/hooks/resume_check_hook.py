"""Refuse to resume a distillation run from another setup's checkpoint."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet.registry import HOOKS

from ..checkpoint import check_state_dict_fits, without_ddp_prefix


@HOOKS.register_module()
class ResumeCheckHook(Hook):
    """On ``--resume``, compares the checkpoint's weights with the model's before
    they are loaded, and stops with what differs.

    mmengine resumes non-strictly: weights of another setup (other taps, another
    student, other projector shapes) load partly with only a warning, and the run
    then dies in the optimizer with ``loaded state dict has a different number of
    parameter groups``, or, if the counts happen to match, trains on with fresh
    projectors. ``load_from`` (starting from weights, not resuming) stays
    non-strict, as in mmengine.
    """

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = without_ddp_prefix(checkpoint.get('state_dict') or {})
        check_state_dict_fits(
            model.state_dict(), state,
            '--resume: the checkpoint was written by another setup than this config',
            'Resume with the config it was trained with, or start a new run from its '
            'weights with load_from=... instead of --resume.')
