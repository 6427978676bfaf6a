"""Pack the EfficientNet-Lite ImageNet weights small enough to carry to the GPU machine.

The GPU machine takes at most 64 MiB per call (code, kit and data together), and
the two weight packages alone are 40 MB. This writes, for each arch, the weights
the benchmark backbone uses: the classifier head (1x1 conv to 1280, its BN, and
the 1000-way fc) is dropped, and conv weights are stored in float16 (relative
rounding 2^-11; BatchNorm tensors stay float32). The backbone loads the file with
``pretrained='<dir>/efficientnet-liteN.pth'`` and casts back to float32.

    python benchmarks/pack_lite_weights.py OUT_DIR [--archs efficientnet-lite0 efficientnet-lite2]
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.efficientnet_lite import HEAD_KEYS, pretrained_weights_path  # noqa: E402


def pack(arch: str, out_dir: Path) -> Path:
    state = torch.load(pretrained_weights_path(arch), map_location='cpu', weights_only=True)
    packed = {k: v.half() if v.is_floating_point() and v.dim() >= 2 else v
              for k, v in state.items() if not k.startswith(HEAD_KEYS)}
    path = out_dir / f'{arch}.pth'
    torch.save(packed, path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir')
    parser.add_argument('--archs', nargs='+', default=['efficientnet-lite0', 'efficientnet-lite2'])
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for arch in args.archs:
        path = pack(arch, out_dir)
        print(f'{path}: {path.stat().st_size / 2**20:.1f} MiB')


if __name__ == '__main__':
    main()
