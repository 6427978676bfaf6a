"""Write a plain MMDetection student checkpoint whenever the runner saves one."""
import os.path as osp
from typing import Optional

from mmengine.dist import master_only
from mmengine.hooks import CheckpointHook, EMAHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import get_state_dict

from mmdet.registry import HOOKS

from ..export import save_student


@HOOKS.register_module()
class StudentExportHook(Hook):
    """Exports the student at every checkpoint save and at the end of training.

    Writes ``<out_dir>/student_epoch_<n>.pth`` (or ``student_iter_<n>.pth``, as the
    ``CheckpointHook`` counts), ``student_final.pth`` after training, and the
    standalone ``student_config.py`` next to them. With an ``EMAHook`` (RTMDet) the
    exported weights are the averaged ones, as in mmengine's own checkpoints.
    Both load in stock MMDetection:
    ``init_detector('student_config.py', 'student_final.pth')``.

    Args:
        out_dir: where to write; default ``<work_dir>/student``.
    """

    priority = 'VERY_LOW'

    def __init__(self, out_dir: Optional[str] = None):
        self.out_dir = out_dir

    def before_train(self, runner) -> None:
        self.out_dir = self.out_dir or osp.join(runner.work_dir, 'student')
        ckpt_hooks = [h for h in runner.hooks if isinstance(h, CheckpointHook)]
        self.by_epoch = ckpt_hooks[0].by_epoch if ckpt_hooks else True

    def _meta(self, runner, epoch: int, it: int) -> dict:
        meta = dict(epoch=epoch, iter=it, exported_by='vkd_mmdet.StudentExportHook')
        dataset_meta = getattr(self._model(runner), 'dataset_meta', None)
        if dataset_meta is None and hasattr(runner.train_dataloader, 'dataset'):
            dataset_meta = getattr(runner.train_dataloader.dataset, 'metainfo', None)
        if dataset_meta is not None:
            meta['dataset_meta'] = dataset_meta
        return meta

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    @master_only  # one writer in distributed training
    def _export(self, runner, name: str, state_dict, epoch: int, it: int):
        path = osp.join(self.out_dir, name)
        save_student(path, state_dict, runner.cfg, self._meta(runner, epoch, it),
                     config_path=osp.join(self.out_dir, 'student_config.py'))
        runner.logger.info(f'StudentExportHook: plain student checkpoint written to {path}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta', {})
        epoch, it = meta.get('epoch', runner.epoch), meta.get('iter', runner.iter)
        name = f'student_epoch_{epoch}.pth' if self.by_epoch else f'student_iter_{it}.pth'
        self._export(runner, name, checkpoint['state_dict'], epoch, it)

    def after_train(self, runner) -> None:
        # With an EMAHook (e.g. RTMDet), the averaged weights are what mmdet
        # validates, saves in its checkpoints and deploys: export those.
        ema = [h for h in runner.hooks if isinstance(h, EMAHook)]
        if ema:
            state = ema[0].ema_model.module.state_dict()
            runner.logger.info('StudentExportHook: exporting the EMA weights of the student')
        else:
            state = get_state_dict(self._model(runner))
        self._export(runner, 'student_final.pth', state, runner.epoch, runner.iter)
