"""The demo's generated detection set: deterministic, valid COCO, loads in mmdet."""
import hashlib

from vkd_mmdet.demo import SHAPE_CLASSES, make_shapes_coco


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob('*')):
        if path.is_file() and path.name != 'params.json':
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_and_mmdet_loads_it(tmp_path):
    paths = make_shapes_coco(str(tmp_path / 'a'), num_train=12, num_val=4, size=96, seed=3)
    make_shapes_coco(str(tmp_path / 'b'), num_train=12, num_val=4, size=96, seed=3)
    make_shapes_coco(str(tmp_path / 'c'), num_train=12, num_val=4, size=96, seed=4)
    assert digest(tmp_path / 'a') == digest(tmp_path / 'b') != digest(tmp_path / 'c')

    from mmdet.datasets import CocoDataset
    ds = CocoDataset(data_root=str(tmp_path / 'a'), ann_file=paths['train'],
                     data_prefix=dict(img='train/'), metainfo=dict(classes=SHAPE_CLASSES),
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='LoadAnnotations', with_bbox=True)],
                     filter_cfg=dict(filter_empty_gt=False))
    assert len(ds) == 12
    labels = set()
    for item in ds:
        boxes = item['gt_bboxes'].tensor
        assert item['img'].shape == (96, 96, 3) and len(boxes) >= 1
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 96).all()
        labels |= set(item['gt_bboxes_labels'].tolist())
    assert len(labels) >= 3  # several classes appear even in 12 images
