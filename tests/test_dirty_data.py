"""Real dirt in ../shared/data/facemask: 1-pixel-wide boxes, and an image without
annotations. Distillation training goes on with finite losses."""
import copy
import json

from mmengine.config import Config
from mmengine.runner import Runner

from helpers import ROOT, read_scalars, coco128_options, data_root, resize_options

CLASSES = ('mask_weared_incorrect', 'with_mask', 'without_mask')


def test_degenerate_boxes_and_empty_images_train(small_pair, tmp_path):
    student, teacher = copy.deepcopy(small_pair)
    for model in (student, teacher):
        model['bbox_head']['num_classes'] = 3
    fm = data_root() / 'facemask'
    full = json.loads((fm / 'annotations' / 'custom_train.json').read_text())
    degenerate = [a for a in full['annotations'] if a['bbox'][2] <= 1 or a['bbox'][3] <= 1]
    assert degenerate, 'the face-mask set should contain 1-pixel boxes'
    keep = {a['image_id'] for a in degenerate}
    images = [i for i in full['images'] if i['id'] in keep]
    # One more real image whose annotations are removed: an image without objects.
    empty = next(i for i in full['images'] if i['id'] not in keep)
    subset = dict(full, images=images + [empty],
                  annotations=[a for a in full['annotations'] if a['image_id'] in keep])
    ann = tmp_path / 'dirty.json'
    ann.write_text(json.dumps(subset))

    cfg = Config.fromfile(str(ROOT / 'configs' / 'vkd_retinanet_r50.py'))
    cfg.merge_from_dict({**coco128_options(batch=2, images=None), **resize_options(cfg, 192)})
    cfg.train_dataloader.dataset.update(
        data_root=f'{fm}/', ann_file=str(ann), data_prefix=dict(img='train2017/'),
        metainfo=dict(classes=CLASSES), indices=None,
        filter_cfg=dict(filter_empty_gt=False, min_size=0))
    cfg.model = dict(type='VkDDistiller', student=student, teacher=teacher,
                     taps=['neck'], probe_size=(128, 128))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_processor.window_size = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, save_last=False)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert len(runner.train_dataloader.dataset) == len(images) + 1
    records = read_scalars(tmp_path / 'work')
    losses = [r for r in records if 'loss' in r]
    assert len(losses) == (len(images) + 2) // 2
    for r in losses:
        for k, v in r.items():
            if k.startswith('loss'):
                assert v == v and abs(v) < 1e4, (k, v)
