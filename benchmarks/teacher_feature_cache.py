"""A frozen teacher's tapped features, computed once per image and read off disk.

In the cpu-hires face-mask protocol the teacher's forward pass at 640 px costs about
two thirds of a distilled step on a CPU, and it is the same every epoch: the teacher
is frozen (eval mode, no dropout, BatchNorm fixed), the training pipeline is
deterministic but for the flip, and each image's maps depend only on that image and
the batch's padded size (samples of a batch never mix in eval mode). So a sample's
maps are stored under (image, flip, its shape, the batch's padded shape) and served
from disk whenever that combination comes again: about 2,200 combinations cover the
677 training images over many epochs and seeds, against 85 x 12 x 8 sampled per run.

The values are the live teacher's (to the rounding of a batch of 1-8 against one of
8), and the teacher draws no random numbers, so a run trains as it would without the
cache; tests/test_bench_teacher_cache.py checks both. Benchmark machinery, not part of
the plugin: a user's pipeline with random crops or photometric augmentation gives a
new input every step, and no cache applies.

Layout: ``<cache_dir>/<teacher module path>/<sample key>.pt``, each file one sample's
used levels of one tapped module, ``{level: (C, H, W) tensor}``.
"""
import hashlib
import json
import os
from pathlib import Path
from typing import Dict, List

import torch

from mmdet.registry import MODELS
from vkd_mmdet.models.vkd_distiller import VkDDistiller


@MODELS.register_module()
class CachedTeacherDistiller(VkDDistiller):
    """:class:`VkDDistiller` whose teacher outputs come from ``teacher_cache_dir``
    when a sample was seen before (same image, flip, shape and batch shape).

    ``teacher_cache_dir`` must be specific to the teacher's weights, config and
    input scale (the benchmark names it by the weights' sha256); the tapped module
    paths are subfolders, so methods tapping the same module share its files.
    """

    def __init__(self, *args, teacher_cache_dir: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher_cache_dir = Path(teacher_cache_dir)
        # The levels each tapped teacher module must keep (after level pairing).
        self._cached_levels: Dict[str, List[int]] = {}
        for tap in self.plan.taps:
            levels = self._cached_levels.setdefault(tap.spec.teacher, [])
            levels += [lvl for lvl in tap.pairing.teacher if lvl not in levels]
        self.cache_hits = self.cache_misses = 0

    def teacher_outputs(self, batch_inputs: torch.Tensor, batch_data_samples) -> Dict[str, object]:
        shape = tuple(batch_inputs.shape[-2:])
        keys = [sample_key(s.metainfo, shape) for s in batch_data_samples]
        entries = [self._load(key) for key in keys]
        missing = [i for i, entry in enumerate(entries) if entry is None]
        self.cache_hits += len(keys) - len(missing)
        self.cache_misses += len(missing)
        if missing:  # the live teacher on those samples only, padded as in the batch
            out = super().teacher_outputs(batch_inputs[missing],
                                          [batch_data_samples[i] for i in missing])
            for j, i in enumerate(missing):
                entries[i] = {path: {lvl: self._levels(out, path)[lvl][j].clone()
                                     for lvl in levels}
                              for path, levels in self._cached_levels.items()}
                self._store(keys[i], entries[i])
        # Levels no tap reads stay empty: select_levels indexes only the paired ones.
        empty = batch_inputs.new_empty(0)
        return {path: [torch.stack([e[path][lvl] for e in entries]).to(batch_inputs.device)
                       if lvl in levels else empty for lvl in range(max(levels) + 1)]
                for path, levels in self._cached_levels.items()}

    @staticmethod
    def _levels(out, path):
        from vkd_mmdet.models.taps import feature_levels
        return feature_levels(out[path], path, 'teacher')

    def _file(self, path: str, key: str) -> Path:
        return self.teacher_cache_dir / path / f'{key}.pt'

    def _load(self, key: str):
        files = {path: self._file(path, key) for path in self._cached_levels}
        if not all(f.is_file() for f in files.values()):
            return None
        entry = {path: torch.load(f, map_location='cpu', weights_only=True)
                 for path, f in files.items()}
        if any(set(levels) - set(entry[path]) for path, levels in self._cached_levels.items()):
            return None  # stored for other levels: recompute (and store all of them)
        return entry

    def _store(self, key: str, entry: dict) -> None:
        for path, levels in entry.items():
            target = self._file(path, key)
            target.parent.mkdir(parents=True, exist_ok=True)
            # (two runs may write one file at once: each writes its own temporary
            # file and renames it, so a reader sees a whole file or none)
            tmp = target.with_suffix(f'.{os.getpid()}.tmp')
            stored = (torch.load(target, map_location='cpu', weights_only=True)
                      if target.is_file() else {})  # (levels another method stored)
            stored.update({lvl: t.cpu().contiguous() for lvl, t in levels.items()})
            torch.save(stored, tmp)
            os.replace(tmp, target)


def sample_key(metainfo: dict, batch_shape) -> str:
    """What a training sample's teacher maps depend on, hashed: the image file, the
    flip, the shape it was resized to and the padded shape of its batch."""
    what = dict(img=str(metainfo['img_path']), flip=bool(metainfo.get('flip', False)),
                direction=metainfo.get('flip_direction'),
                img_shape=list(metainfo['img_shape']), batch_shape=list(batch_shape))
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]
