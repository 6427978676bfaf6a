"""The few-labels split of a COCO training set: a labelled part L and the rest U,
whose annotations are removed before anything trains on them.

The split (image ids only) is drawn once with a fixed seed and committed
(``benchmarks/splits/``); the two annotation files are derived from it and the
data set at run time, so no data is copied into the repository:

- ``L``: the images of L with their boxes (what the teacher and every student's
  detection loss see);
- ``U``: the images of U as a COCO json with ``images`` and ``categories`` only,
  no ``annotations`` (what distillation and the pseudo-labels see).

    python benchmarks/fewlabels_split.py draw   # (re)draw the committed split
    python benchmarks/fewlabels_split.py check  # L and U are disjoint, U carries no box
"""
import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPLIT_FILE = ROOT / 'benchmarks' / 'splits' / 'facemask_fewlabels.json'
DRAW_SEED = 0
LABELLED_SHARE = 0.25


def draw(train_ann: Path, share: float = LABELLED_SHARE, seed: int = DRAW_SEED) -> dict:
    """Image ids of L (``round(share * n)`` images drawn with ``seed``) and U (the rest),
    both sorted."""
    images = json.loads(Path(train_ann).read_text())['images']
    ids = sorted(img['id'] for img in images)
    labelled = sorted(random.Random(seed).sample(ids, round(share * len(ids))))
    chosen = set(labelled)
    return dict(train_ann=Path(train_ann).name, seed=seed, share=share,
                labelled=labelled, unlabelled=[i for i in ids if i not in chosen])


def write_annotations(train_ann: Path, split: dict, out_dir: Path) -> dict:
    """Write L's and U's COCO files under ``out_dir``; return their paths.

    Raises ``SystemExit`` if the split names an image id the annotation file lacks
    (a split drawn from another file)."""
    coco = json.loads(Path(train_ann).read_text())
    by_id = {img['id']: img for img in coco['images']}
    missing = [i for i in split['labelled'] + split['unlabelled'] if i not in by_id]
    if missing:
        raise SystemExit(f'fewlabels_split: {len(missing)} image ids of the split (first '
                         f'{missing[:5]}) are not in {train_ann}; the split was drawn from '
                         f"{split['train_ann']}")
    labelled = set(split['labelled'])
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = dict(labelled=out_dir / 'labelled.json', unlabelled=out_dir / 'unlabelled.json')
    base = {k: v for k, v in coco.items() if k not in ('images', 'annotations')}
    files = {
        'labelled': dict(base, images=[by_id[i] for i in split['labelled']],
                         annotations=[a for a in coco['annotations']
                                      if a['image_id'] in labelled]),
        # images only: no annotation of U is written anywhere
        'unlabelled': dict(base, images=[by_id[i] for i in split['unlabelled']]),
    }
    for name, content in files.items():
        text = json.dumps(content)
        if not paths[name].is_file() or paths[name].read_text() != text:
            paths[name].write_text(text)
    return {k: str(v) for k, v in paths.items()}


def load_split(path: Path = SPLIT_FILE) -> dict:
    split = json.loads(Path(path).read_text())
    overlap = set(split['labelled']) & set(split['unlabelled'])
    if overlap:
        raise SystemExit(f'fewlabels_split: {path} puts {len(overlap)} images in both L and U')
    return split


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('command', choices=['draw', 'check'])
    parser.add_argument('--train-ann', default=str(
        ROOT.parent / 'shared' / 'data' / 'facemask' / 'annotations' / 'custom_train.json'))
    args = parser.parse_args(argv)
    if args.command == 'draw':
        split = draw(Path(args.train_ann))
        SPLIT_FILE.parent.mkdir(parents=True, exist_ok=True)
        SPLIT_FILE.write_text('{\n' + ',\n'.join(f'"{k}": {json.dumps(v)}' for k, v in split.items())
                              + '\n}\n')
    split = load_split()
    print(f"fewlabels_split: L {len(split['labelled'])} images, U {len(split['unlabelled'])} "
          f"(seed {split['seed']}, share {split['share']}) in {SPLIT_FILE}")


if __name__ == '__main__':
    sys.exit(main())
