"""Every loss of one seeded training step of the face-mask cost benchmark's
distillers, written out to the last digit: a change to the distiller's code that
must not change its numerics is checked by running this before and after and
comparing the two files (``--compare``).

For each distiller of ``bench_facemask_cost.py`` (same models, same real batch of 8
face-mask images): seed 0, build, one forward pass in training mode, the losses
as ``float.hex`` strings (exact), then one backward pass and the sum of the
gradients' absolute values over the student and the projectors, also exact.

    python benchmarks/step_losses.py --out before.json
    python benchmarks/step_losses.py --out after.json --compare before.json
"""
import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.bench_facemask_cost import DISTILLERS, build, real_batch, setup  # noqa: E402


def step_losses(name: str, inputs, samples) -> dict:
    """``{loss key: float.hex}`` of one step of ``name``, plus ``grad_abs_sum``."""
    torch.manual_seed(0)
    model, _ = build(name)
    losses = model(inputs, samples, mode='loss')
    values = {k: sum(v) if isinstance(v, (list, tuple)) else v for k, v in losses.items()}
    out = {k: float(v.sum()).hex() for k, v in sorted(values.items())}
    total = sum(v.sum() for k, v in values.items() if 'loss' in k)
    total.backward()
    out['grad_abs_sum'] = float(sum(p.grad.double().abs().sum()
                                    for p in model.parameters() if p.grad is not None)).hex()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', default=os.environ.get(
        'VKD_FACEMASK_ROOT', str(ROOT.parent / 'shared' / 'data' / 'facemask')))
    parser.add_argument('--out', required=True)
    parser.add_argument('--compare', help='a file this script wrote before')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one thread: the same reduction order on every run
    setup()
    from mmengine.runner import set_random_seed
    set_random_seed(0)  # the pipeline's random flips draw from numpy's global RNG
    inputs, samples = real_batch(args.data_root, 8)
    result = {name: step_losses(name, inputs, samples) for name in DISTILLERS}
    Path(args.out).write_text(json.dumps(result, indent=1) + '\n')
    print(json.dumps({n: {k: float.fromhex(v) for k, v in r.items()}
                      for n, r in result.items()}, indent=1))
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        diff = {n: {k: (before.get(n, {}).get(k), v) for k, v in r.items()
                    if before.get(n, {}).get(k) != v} for n, r in result.items()}
        diff = {n: d for n, d in diff.items() if d}
        print('identical to the last digit' if not diff else f'DIFFERENT: {diff}')
        return 1 if diff else 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
