"""Every tap level's orthogonal map, computed before the forward passes need it.

A projection's matrix depends on its parameter only, not on the features, so it can
be computed at the start of the step. On CUDA that happens on a side stream, where the
QRs overlap with the teacher's and the student's forward passes: each is
latency-bound, whatever its size (measured: docs/design.md). Values and gradients
are the same as computing each map where it is used (autograd runs the QRs'
backward on the stream of their forward, and synchronises it with the rest of the
backward pass).
"""
import contextlib
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from torch.profiler import record_function

_SIDE_STREAMS: Dict[torch.device, 'torch.cuda.Stream'] = {}


def _side_stream(device: torch.device) -> 'torch.cuda.Stream':
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    return _SIDE_STREAMS[device]


class MapsAhead:
    """``MapsAhead(distill_losses, device)`` starts every
    :meth:`VkDLoss.projector_weight` (``(C_t, C_s)`` float32, ``None`` for a
    projection without a map); ``maps[key]`` returns one tap's list, ready for use on
    the current stream."""

    def __init__(self, distill_losses: nn.ModuleDict, device: torch.device):
        device = torch.device(device)
        self._stream = None
        self._joined = False
        if device.type == 'cuda':
            self._stream = _side_stream(device)
            # (the parameters were last written by the optimizer on the current stream)
            self._stream.wait_stream(torch.cuda.current_stream(device))
        side = (torch.cuda.stream(self._stream) if self._stream is not None
                else contextlib.nullcontext())
        with side, record_function('vkd:orthogonal_maps'):
            self._weights = {key: [loss.projector_weight() for loss in losses]
                             for key, losses in distill_losses.items()}

    def __getitem__(self, key: str) -> List[Optional[torch.Tensor]]:
        if self._stream is not None and not self._joined:
            current = torch.cuda.current_stream(self._stream.device)
            current.wait_stream(self._stream)
            for weights in self._weights.values():
                for w in weights:
                    if w is not None:
                        # made on the side stream, used (and freed) on this one
                        w.record_stream(current)
            self._joined = True
        return self._weights[key]
