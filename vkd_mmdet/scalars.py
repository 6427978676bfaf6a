"""The scalars (losses, learning rate, val metrics) mmengine logs while training."""
import json
from pathlib import Path
from typing import List, Union


def read_scalars(path: Union[str, Path]) -> List[dict]:
    """The records of a LocalVisBackend ``scalars.json`` file, one dict per logged
    step (``{'step': 20, 'loss': ..., 'lr': ...}``, ``{'step': 1, 'coco/bbox_mAP':
    ...}``). ``path`` is the file, or a work_dir: then its newest run's
    ``<timestamp>/vis_data/scalars.json``."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob('*/vis_data/scalars.json'))
        if not found:
            raise FileNotFoundError(f'no <timestamp>/vis_data/scalars.json under {path}: '
                                    f'did a run with the LocalVisBackend train there?')
        path = found[-1]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
