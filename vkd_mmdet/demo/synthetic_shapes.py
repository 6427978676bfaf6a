"""A small detection set generated from a seed: coloured shapes on textured
backgrounds, with partial occlusion, written in COCO format.

Nothing is downloaded; the same seed gives byte-identical files. The classes
differ by shape, not colour, so a detector has to learn form, and sizes vary
from small to large so every FPN level sees objects.
"""
import json
import os.path as osp
from pathlib import Path
from typing import Dict

import cv2
import numpy as np

SHAPE_CLASSES = ('circle', 'square', 'triangle', 'cross', 'ring')


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour noise plus a gradient: texture that is not an object."""
    coarse = rng.integers(40, 215, size=(size // 16 + 1, size // 16 + 1, 3)).astype(np.uint8)
    img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    img += rng.normal(0, 12, size=(size, size, 3))
    ramp = np.linspace(-25, 25, size, dtype=np.float32)
    img += ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw(img: np.ndarray, label: int, x: int, y: int, s: int, color) -> None:
    """Draw shape ``label`` filling the box (x, y, x+s, y+s)."""
    c = (x + s // 2, y + s // 2)
    name = SHAPE_CLASSES[label]
    if name == 'circle':
        cv2.circle(img, c, s // 2, color, -1, cv2.LINE_AA)
    elif name == 'square':
        cv2.rectangle(img, (x, y), (x + s - 1, y + s - 1), color, -1)
    elif name == 'triangle':
        pts = np.array([[c[0], y], [x, y + s - 1], [x + s - 1, y + s - 1]], np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
    elif name == 'cross':
        t = max(2, s // 4)
        cv2.rectangle(img, (c[0] - t // 2, y), (c[0] + t // 2, y + s - 1), color, -1)
        cv2.rectangle(img, (x, c[1] - t // 2), (x + s - 1, c[1] + t // 2), color, -1)
    else:  # ring
        cv2.circle(img, c, s // 2 - max(1, s // 8), color, max(2, s // 5), cv2.LINE_AA)


def _split(rng, out: Path, split: str, count: int, size: int, start_id: int) -> Dict:
    images, annotations = [], []
    (out / split).mkdir(parents=True, exist_ok=True)
    ann_id = start_id
    for i in range(count):
        img = _background(rng, size)
        name = f'{split}_{i:05d}.png'
        for _ in range(int(rng.integers(1, 6))):
            s = int(rng.integers(size // 10, size // 2.5))
            x, y = (int(v) for v in rng.integers(0, size - s, size=2))
            label = int(rng.integers(len(SHAPE_CLASSES)))
            color = tuple(int(v) for v in rng.integers(0, 256, size=3))
            _draw(img, label, x, y, s, color)
            annotations.append(dict(id=ann_id, image_id=start_id + i, category_id=label,
                                    bbox=[x, y, s, s], area=s * s, iscrowd=0))
            ann_id += 1
        cv2.imwrite(str(out / split / name), img)
        images.append(dict(id=start_id + i, file_name=name, width=size, height=size))
    categories = [dict(id=i, name=n) for i, n in enumerate(SHAPE_CLASSES)]
    return dict(images=images, annotations=annotations, categories=categories)


def make_shapes_coco(root: str, num_train: int = 300, num_val: int = 100, size: int = 128,
                     seed: int = 0) -> Dict[str, str]:
    """Write ``root/{train,val}/*.png`` and ``root/annotations/{train,val}.json``.

    Reuses an existing set made with the same parameters. Returns the paths.
    """
    out = Path(root)
    params = dict(num_train=num_train, num_val=num_val, size=size, seed=seed, version=1)
    stamp = out / 'params.json'
    paths = {s: str(out / 'annotations' / f'{s}.json') for s in ('train', 'val')}
    if stamp.is_file() and json.loads(stamp.read_text()) == params and all(
            osp.isfile(p) for p in paths.values()):
        return paths
    rng = np.random.default_rng(seed)
    (out / 'annotations').mkdir(parents=True, exist_ok=True)
    for split, count, start in (('train', num_train, 0), ('val', num_val, 10 ** 6)):
        coco = _split(rng, out, split, count, size, start)
        Path(paths[split]).write_text(json.dumps(coco))
    stamp.write_text(json.dumps(params))
    return paths
