"""Small RetinaNet configs for CPU runs (used by the tests; the demo uses configs/demo/)."""
from mmengine.hub import get_config

# Output channels of ResNet stages C2..C5: basic blocks (18/34) vs bottlenecks.
_STAGE_CHANNELS = {False: [64, 128, 256, 512], True: [256, 512, 1024, 2048]}


def small_retinanet(depth: int = 18, fpn: int = 64, stacked_convs: int = 1,
                    num_classes: int = 80) -> dict:
    """mmdet's RetinaNet with a ResNet-``depth`` backbone, an ``fpn``-channel neck
    and head, and no pretrained initialisation (nothing to download)."""
    model = get_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py').model
    model.backbone.update(depth=depth, init_cfg=None)
    model.neck.update(in_channels=_STAGE_CHANNELS[depth >= 50], out_channels=fpn)
    model.bbox_head.update(in_channels=fpn, feat_channels=fpn,
                           stacked_convs=stacked_convs, num_classes=num_classes)
    return model.to_dict()
