# VkD on labelled and unlabelled images: configs/vkd_retinanet_r50.py (RetinaNet-R50
# student, RetinaNet-X101 teacher) distilled on COCO train2017 (labelled) plus
# unlabeled2017/ (123k images, no annotation file needed). The student's detection
# loss sees the labelled images only; every distillation tap sees all of them.
# Each batch: 2 labelled + 2 unlabelled images per GPU (source_ratio), so the
# detection loss sees as many labelled images a step as the 1x schedule it comes from,
# and the unlabelled ones come on top (about 2x the student's compute per step).
# How to point it at your own raw frames: docs/unlabelled.md.
_base_ = './vkd_retinanet_r50.py'

labelled = {{_base_.train_dataloader.dataset}}
unlabelled = dict(
    type='UnlabelledImages',
    data_root='data/coco/',
    data_prefix=dict(img='unlabeled2017/'),  # a folder of images; or ann_file= a COCO image list
    pipeline={{_base_.train_pipeline}})  # the labelled set's pipeline, as it is

train_dataloader = dict(
    _delete_=True,
    batch_size=4, num_workers=2, persistent_workers=True,
    sampler=dict(type='GroupMultiSourceSampler', batch_size=4, source_ratio=[2, 2]),
    dataset=dict(type='ConcatDataset', datasets=[labelled, unlabelled]))

# The multi-source sampler never ends an epoch of its own: train by iterations (the 1x
# schedule's 12 epochs of 7,330 iterations at 16 labelled images a step).
max_iters = 90000
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=7330)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[60000, 80000], gamma=0.1)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=7330, max_keep_ckpts=3),
                     logger=dict(log_metric_by_epoch=False))
log_processor = dict(by_epoch=False)
