"""The face-mask benchmark on a COCO-format set it has never seen: class names and
count come from the annotation files; an unusable split fails with a message."""
import json

import pytest
from helpers import data_root, load_benchmark


def bench():
    return load_benchmark('bench_facemask')


def two_class_set(tmp_path, categories=({'id': 7, 'name': 'person'}, {'id': 3, 'name': 'car'})):
    """coco128's persons and cars as a 2-class set in another layout."""
    coco = json.loads((data_root() / 'coco128' / 'annotations' /
                       'instances_train2017.json').read_text())
    keep = {1: 7, 3: 3}  # COCO person -> 7, car -> 3
    anns = [dict(a, category_id=keep[a['category_id']]) for a in coco['annotations']
            if a['category_id'] in keep and not a.get('iscrowd')]
    ids = {a['image_id'] for a in anns}
    images = [i for i in coco['images'] if i['id'] in ids][:12]
    ids = {i['id'] for i in images}
    root = tmp_path / 'set'
    (root / 'ann').mkdir(parents=True)
    (root / 'imgs').symlink_to(data_root() / 'coco128' / 'train2017')
    for split in ('mine_train', 'mine_val'):
        (root / 'ann' / f'{split}.json').write_text(json.dumps(dict(
            images=images, categories=list(categories),
            annotations=[a for a in anns if a['image_id'] in ids])))
    return root


def test_classes_and_layout_come_from_the_data(tmp_path):
    from mmdet.registry import DATASETS
    b = bench()
    root = two_class_set(tmp_path)
    splits = dict(train_ann='ann/mine_train.json', val_ann='ann/mine_val.json',
                  train_img_dir='imgs/', val_img_dir='imgs/')
    spec = b.run_spec('vkd', 0, 'quick', root, dict(checkpoint='/t.pth'), splits)
    cfg = b.build_config(spec)
    # Category-id order: car (3) before person (7).
    assert cfg.train_dataloader.dataset.metainfo.classes == ['car', 'person']
    assert cfg.model.student.bbox_head.num_classes == 2
    assert cfg.model.teacher['bbox_head']['num_classes'] == 2
    assert cfg.val_evaluator.ann_file == f'{root}/ann/mine_val.json'
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) > 0
    labels = {int(i['bbox_label']) for k in range(len(dataset))
              for i in dataset.get_data_info(k)['instances']}
    assert labels == {0, 1}
    mmrazor = b.build_config(b.run_spec('mmrazor_pkd', 0, 'quick', root,
                                        dict(checkpoint='/t.pth'), splits))
    assert mmrazor.model.teacher['bbox_head']['num_classes'] == 2
    # Face-mask's own layout stays the default.
    facemask = b.dataset_options(data_root() / 'facemask', b.DEFAULT_SPLITS)
    assert facemask['model.bbox_head.num_classes'] == 3
    assert facemask['train_dataloader.dataset.metainfo.classes'] == [
        'mask_weared_incorrect', 'with_mask', 'without_mask']


def test_unusable_splits_fail_with_what_and_where(tmp_path):
    b = bench()
    root = two_class_set(tmp_path)
    splits = dict(train_ann='ann/mine_train.json', val_ann='ann/mine_val.json',
                  train_img_dir='imgs/', val_img_dir='imgs/')
    with pytest.raises(SystemExit, match=r'annotation file .*custom_train.json does not exist; '
                                         r'pass --train-ann'):
        b.dataset_options(root, b.DEFAULT_SPLITS)
    with pytest.raises(SystemExit, match=r'image folder .*pics does not exist.*--val-img-dir'):
        b.dataset_options(root, dict(splits, val_img_dir='pics/'))
    # Boxes whose categories the file does not list: the split is empty.
    other = json.loads((root / 'ann' / 'mine_train.json').read_text())
    other['categories'] = [{'id': 99, 'name': 'dog'}]
    (root / 'ann' / 'other.json').write_text(json.dumps(other))
    with pytest.raises(SystemExit, match=r"the val split \(.*other.json\) is empty: 12 images, "
                                         r"\d+ annotations, none of them a box"):
        b.dataset_options(root, dict(splits, val_ann='ann/other.json'))
    with pytest.raises(SystemExit, match='list different categories'):
        other['categories'] = [{'id': 7, 'name': 'person'}, {'id': 3, 'name': 'truck'}]
        (root / 'ann' / 'other.json').write_text(json.dumps(other))
        b.dataset_options(root, dict(splits, val_ann='ann/other.json'))
