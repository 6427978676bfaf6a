"""The face-mask benchmark's VkD ablations: each one's training config differs from
the defaults' ('vkd') in what its label says, and in nothing else."""
import copy

from helpers import data_root, load_benchmark


def configs(*methods):
    b = load_benchmark('bench_facemask')
    return {m: b.build_config(b.run_spec(m, 0, 'cpu-pretrained', data_root() / 'facemask',
                                         dict(checkpoint='/teacher.pth'))).to_dict()
            for m in methods}


def without(cfg: dict, *paths) -> dict:
    """``cfg`` with the dotted ``paths`` removed, and without the run's name."""
    cfg = copy.deepcopy(cfg)
    cfg['visualizer'].pop('name')
    for path in paths:
        *parents, last = path.split('.')
        node = cfg
        for key in parents:
            node = node[key]
        node.pop(last)
    return cfg


def test_each_ablation_changes_what_its_label_says_and_nothing_else():
    from mmdet.registry import HOOKS
    import vkd_mmdet  # noqa: F401  (registers the hooks)
    from vkd_mmdet.models.taps import parse_taps
    cfgs = configs('vkd', 'vkd_weight1', 'vkd_cosine', 'vkd_warmup', 'vkd_p3_p5',
                   'vkd_backbone_neck')
    vkd = cfgs['vkd']
    assert vkd['model']['taps'] == ['neck'] and vkd['model']['tap_defaults'] == {}
    assert [h['type'] for h in vkd['custom_hooks']] == ['TeacherCheckHook', 'StudentExportHook',
                                                       'ChannelsLastHook']

    assert cfgs['vkd_weight1']['model']['tap_defaults'] == dict(loss_weight=1.0)

    hooks = cfgs['vkd_cosine']['custom_hooks']
    schedule = [h for h in hooks if h['type'] == 'DistillWeightScheduleHook']
    assert len(schedule) == 1 and len(hooks) == 4
    hook = HOOKS.build(schedule[0])
    assert hook.weight_at(0, 0, 255) == 1.0 and hook.weight_at(255, 2, 255) == 0.0

    warmup = [h for h in cfgs['vkd_warmup']['custom_hooks']
              if h['type'] == 'DistillWeightScheduleHook']
    assert len(warmup) == 1 and len(cfgs['vkd_warmup']['custom_hooks']) == 4
    hook = HOOKS.build(warmup[0])
    assert hook.weight_at(0, 0, 255) == 1 / 85 and hook.weight_at(84, 0, 255) == 1.0
    assert hook.weight_at(254, 2, 255) == 1.0  # no decay after it

    assert cfgs['vkd_p3_p5']['model']['taps'] == ['neck[0,1,2]']
    assert parse_taps(['neck[0,1,2]'])[0].student_levels == [0, 1, 2]
    assert cfgs['vkd_backbone_neck']['model']['taps'] == ['backbone', 'neck']

    differs = {'vkd_weight1': ['model.tap_defaults'], 'vkd_cosine': ['custom_hooks'],
               'vkd_warmup': ['custom_hooks'],
               'vkd_p3_p5': ['model.taps'], 'vkd_backbone_neck': ['model.taps']}
    for method, paths in differs.items():
        assert without(cfgs[method], *paths) == without(vkd, *paths), method


def test_each_head_and_foreground_variant_changes_its_taps_or_options_and_trains():
    """The variants that distil the head towers, weight the boxes or standardise per
    image: only the taps or the tap options differ from the defaults, and each
    builds on the benchmark's Lite0/Lite2 pair and takes a training step."""
    import torch
    from mmdet.registry import MODELS
    from helpers import detection_batch
    variants = ('vkd_head', 'vkd_neck_head', 'vkd_neck_fg', 'vkd_head_fg', 'vkd_image_norm',
                'vkd_head_light', 'vkd_head_depth')
    cfgs = configs('vkd', *variants)
    head = [dict(module='bbox_head.cls_convs', loss_weight=2.0),
            dict(module='bbox_head.reg_convs', loss_weight=2.0)]
    fg = dict(foreground_weight=1.0, background_weight=0.5)
    assert cfgs['vkd_head']['model']['taps'] == head
    assert cfgs['vkd_neck_head']['model']['taps'] == ['neck'] + head
    assert cfgs['vkd_neck_fg']['model']['tap_defaults'] == fg
    assert (cfgs['vkd_head_fg']['model']['taps'], cfgs['vkd_head_fg']['model']['tap_defaults']) \
        == (head, fg)
    assert cfgs['vkd_image_norm']['model']['tap_defaults'] == dict(norm='standardize_image')
    assert cfgs['vkd_head_light']['model']['taps'] == [dict(t, loss_weight=0.5) for t in head]
    assert [(t['student'], t['teacher']) for t in cfgs['vkd_head_depth']['model']['taps']] == [
        ('bbox_head.cls_convs', 'bbox_head.cls_convs.1'),
        ('bbox_head.reg_convs', 'bbox_head.reg_convs.1')]
    for method in variants:
        assert without(cfgs[method], 'model.taps', 'model.tap_defaults') == \
            without(cfgs['vkd'], 'model.taps', 'model.tap_defaults'), method
        model_cfg = dict(cfgs[method]['model'], teacher_ckpt=None, probe_size=(128, 128))
        model = MODELS.build(model_cfg).train()
        inputs, samples = detection_batch(model, size=128)
        for sample in samples:  # face-mask's 3 classes
            sample.gt_instances.labels %= 3
        losses = model.loss(inputs, samples)
        vkd = {k: v for k, v in losses.items() if k.startswith('loss_vkd')}
        assert vkd and all(torch.isfinite(v) and v > 0 for v in vkd.values()), (method, vkd)
