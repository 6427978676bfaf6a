"""Refuse to resume a distillation run from another setup's checkpoint."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet.registry import HOOKS

from ..checkpoint import CheckpointMismatchError


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
        state = {k[7:] if k.startswith('module.') else k: v
                 for k, v in (checkpoint.get('state_dict') or {}).items()}
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in own if k in state and state[k].shape != own[k].shape]
        if missing or unexpected or shapes:
            raise CheckpointMismatchError(
                f'--resume: the checkpoint was written by another setup than this config: '
                f'{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} '
                f'unexpected keys (e.g. {unexpected[:3]}), {len(shapes)} shape mismatches '
                f'(e.g. {shapes[:2]}). Resume with the config it was trained with, or start '
                f'a new run from its weights with load_from=... instead of --resume.')
