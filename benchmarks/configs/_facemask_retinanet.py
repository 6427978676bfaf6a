# Shared base of the face-mask benchmark: RetinaNet on ../shared/data/facemask
# (3 classes, 677 train / 171 val real photos, mostly 400x300), 320 px, batch 8.
# The teacher and student configs beside it pick backbone, FPN and head widths;
# benchmarks/bench_facemask.py sets data_root, epochs and seeds.
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
custom_imports = dict(imports=['vkd_mmdet', 'benchmarks.efficientnet_lite'],
                      allow_failed_imports=False)

data_root = '../shared/data/facemask/'
classes = ('mask_weared_incorrect', 'with_mask', 'without_mask')
image_size = (320, 320)

model = dict(
    data_preprocessor=dict(mean=[127.0] * 3, std=[128.0] * 3, bgr_to_rgb=True),
    backbone=dict(_delete_=True, type='EfficientNetLite', pretrained=True,
                  out_strides=(8, 16, 32)),
    neck=dict(start_level=0, add_extra_convs='on_output', num_outs=5),
    bbox_head=dict(num_classes=len(classes)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
_dataset = dict(type='CocoDataset', data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(_dataset, ann_file='annotations/custom_train.json',
                 data_prefix=dict(img='train2017/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=2), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(_dataset, ann_file='annotations/custom_val.json',
                 data_prefix=dict(img='val2017/'), test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/custom_val.json',
                     metric='bbox', format_only=False)
test_evaluator = val_evaluator

max_epochs = 6
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                     clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=20)
