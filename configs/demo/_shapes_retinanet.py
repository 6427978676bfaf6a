# Shared base of the demo configs: RetinaNet trained from scratch on the generated
# shapes set (5 classes, 128 px images; `python tools/demo.py` writes it to
# work_dirs/demo/default/shapes/). Not a config to train on its own: the teacher, student
# and VkD configs beside it pick the backbone depth, FPN width and schedule.
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'

data_root = 'work_dirs/demo/default/shapes/'
classes = ('circle', 'square', 'triangle', 'cross', 'ring')
image_size = (128, 128)

model = dict(
    # From scratch (nothing to download): train every stage, BN in train mode.
    backbone=dict(frozen_stages=-1, norm_eval=False, init_cfg=None),
    bbox_head=dict(num_classes=len(classes), stacked_convs=2))

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
    dataset=dict(_dataset, ann_file='annotations/train.json', data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(_dataset, ann_file='annotations/val.json', data_prefix=dict(img='val/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/val.json',
                     metric='bbox', format_only=False)
test_evaluator = val_evaluator

# Short from-scratch schedule: AdamW with a linear warm-up, then a cosine decay.
max_epochs = 6
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
                     clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
log_processor = dict(window_size=10)
