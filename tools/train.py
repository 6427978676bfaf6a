"""Train a detector, or a VkD distillation, from an MMDetection config.

Same flags as MMDetection's tools/train.py:

    python tools/train.py configs/vkd_retinanet_r50.py [--work-dir DIR] [--amp]
        [--resume [CKPT]] [--auto-scale-lr] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

import torch  # noqa: E402
import vkd_mmdet  # noqa: E402,F401  (registers the plugin, makes checkpoints loadable)
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from vkd_mmdet.export import builds_distiller  # noqa: E402
from vkd_mmdet.hooks import add_vkd_hooks  # noqa: E402
from vkd_mmdet.optim import exclude_projectors_from_weight_decay  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector (VkD distillation or plain)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='automatic mixed precision (fp16 on GPU; bf16 on a CPU with native '
                             'bf16, float32 on one without)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate with the total batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the latest checkpoint in the '
                             'work dir when no path is given')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, xxx=yyy format')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torchrun sets LOCAL_RANK).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args) -> Config:
    if not osp.isfile(args.config):
        raise SystemExit(f'train.py: config file {args.config} does not exist')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if builds_distiller(cfg.get('model', {})):
        print(f'train.py: {exclude_projectors_from_weight_decay(cfg)}')
        added = add_vkd_hooks(cfg)
        if added:
            print(f'train.py: added the plugin hooks {added} to the config\'s custom_hooks '
                  f'({[h["type"] for h in cfg.custom_hooks]})')

    if args.launcher == 'pytorch' and not torch.cuda.is_available():
        setup_cpu_distributed(cfg)

    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') in ('AmpOptimWrapper', 'CPUAmpOptimWrapper'):
            print('train.py: AMP is already enabled in the config')
        elif torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'  # fp16 with dynamic loss scaling
            cfg.optim_wrapper.loss_scale = 'dynamic'
        else:
            # bf16 autocast where the CPU has native bf16 (else float32), no scaling
            cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
    if not torch.cuda.is_available():
        amp_on_cpu(cfg)

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr and \
                'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise SystemExit('train.py: --auto-scale-lr needs `auto_scale_lr = '
                             'dict(enable=..., base_batch_size=...)` in the config')

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
        check_resume_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise SystemExit(f'train.py: --resume checkpoint {args.resume} does not exist')
        check_resume_checkpoint(osp.dirname(args.resume) or '.', args.resume)
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def check_resume_checkpoint(work_dir: str, path: str = None) -> None:
    """Stop with the file's name, and the newest intact checkpoint beside it, when the
    checkpoint to resume from (``path``, or the one ``work_dir/last_checkpoint`` names)
    is cut short or not a checkpoint (e.g. the machine died while it was written)."""
    import glob
    from vkd_mmdet.checkpoint import CheckpointError, check_checkpoint_file
    if path is None:
        pointer = osp.join(work_dir, 'last_checkpoint')
        if not osp.isfile(pointer):
            return  # nothing to resume: mmengine starts afresh
        with open(pointer) as f:
            path = f.read().strip()
        if not osp.isfile(path):
            path = osp.join(work_dir, osp.basename(path))  # a moved work dir
    try:
        check_checkpoint_file(path)
    except CheckpointError as exc:
        others = sorted((p for p in glob.glob(osp.join(osp.dirname(path) or '.', '*.pth'))
                         if osp.abspath(p) != osp.abspath(path)),
                        key=osp.getmtime, reverse=True)
        intact = next((p for p in others if _is_checkpoint(p)), None)
        fix = (f'resume from the newest intact one: --resume {intact}' if intact else
               'no intact checkpoint is beside it: start again without --resume')
        raise SystemExit(f'train.py: cannot resume: {exc} Delete it and {fix}') from None


def _is_checkpoint(path: str) -> bool:
    from vkd_mmdet.checkpoint import CheckpointError, check_checkpoint_file
    try:
        check_checkpoint_file(path)
        return True
    except CheckpointError:
        return False


def amp_on_cpu(cfg: Config) -> None:
    """An ``AmpOptimWrapper`` in the config (mmdet's ``*amp*`` configs) on a machine
    without a GPU, where mmengine's wrapper refuses to run: the plugin's
    ``CPUAmpOptimWrapper``, as ``--amp`` picks there (bf16 autocast, unless the config
    names a dtype)."""
    optim = cfg.get('optim_wrapper') or {}
    if optim.get('type') != 'AmpOptimWrapper':
        return
    optim['type'] = 'CPUAmpOptimWrapper'
    if optim.get('dtype') in (None, 'float32'):
        optim['dtype'] = 'bfloat16'
    print(f"train.py: the config's AmpOptimWrapper needs a GPU, and there is none: "
          f"using CPUAmpOptimWrapper ({optim['dtype']} autocast"
          f"{', fp16 loss scaling' if optim['dtype'] == 'float16' else ''}"
          f"{' where the CPU computes bf16 natively, else float32' if optim['dtype'] == 'bfloat16' else ''}"
          f") instead")


def setup_cpu_distributed(cfg: Config) -> None:
    """torchrun without GPUs: gloo instead of NCCL, DDP without device ids.

    mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally
    and its DDP wrapper passes ``device_ids=[LOCAL_RANK]``; both fail on a CPU-only
    torch. The process group is created here with PyTorch's own env:// rendezvous
    (set by torchrun), which mmengine then reuses.
    """
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    print(f'train.py: no GPU; rank {dist.get_rank()}/{dist.get_world_size()} uses the gloo backend')
    cfg.env_cfg.dist_cfg = dict(cfg.env_cfg.get('dist_cfg', {}), backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def main(argv=None):
    cfg = build_config(parse_args(argv))
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
