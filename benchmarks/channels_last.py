"""Channels-last tensors for the benchmarks' training runs on the CPU.

oneDNN's convolutions run faster on channels-last (NHWC) tensors on the CPU: one
training step of the face-mask Lite0 student (416 px, batch 8, 2 cores) took 1.5-1.6 s
against 2.3-2.9 s in the default layout. Only the layout changes, not the values (to
float rounding), so a run's cache key does not include it.

Convolutions keep the layout of their weights, so the data preprocessor's default
(NCHW) batch needs no conversion. ``VkDDistiller`` keeps its teacher outside the module
tree but converts it with the student (its ``_apply``); MMRazor's teacher is a submodule.
"""
import torch
from mmengine.hooks import Hook

from mmdet.registry import HOOKS


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Convert the model's 4-D weights to channels-last before training (after a
    resumed checkpoint is loaded: the parameters stay the same objects, so the
    optimizer keeps them)."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        runner.model.to(memory_format=torch.channels_last)
