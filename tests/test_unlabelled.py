"""Distilling on unlabelled images: the student's detection loss sees the labelled
images only, every distillation term sees all of them."""
import copy
import json
import shutil

import pytest
import torch

from helpers import (ROOT, coco128_options, data_root, detection_batch, small_pair,
                     small_retinanet)


def mark_unlabelled(samples, positions):
    for i in positions:
        samples[i].set_metainfo(dict(unlabelled=True))
    return samples


@pytest.fixture(scope='module')
def student():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(small_retinanet(18, fpn=64, stacked_convs=2))
    model.train()  # (the R18 backbone keeps norm_eval=True: frozen BatchNorm)
    return model


def test_the_detection_loss_equals_the_labelled_only_loss(student):
    inputs, samples = detection_batch(student, n=4, size=128, seed=1)
    from vkd_mmdet.models.unlabelled_split import detection_loss
    labelled = [0, 2]
    alone = student.loss(inputs[labelled], [copy.deepcopy(samples[i]) for i in labelled])
    split = detection_loss(student, inputs, mark_unlabelled(samples, [1, 3]))
    assert alone.keys() == split.keys()
    for key in alone:
        a, s = torch.stack(list(alone[key])), torch.stack(list(split[key]))
        assert torch.equal(a, s), (key, a, s)


def test_an_unlabelled_images_boxes_change_no_detection_loss(student):
    from vkd_mmdet.models.unlabelled_split import detection_loss
    inputs, samples = detection_batch(student, n=3, size=128, seed=2)
    _, other = detection_batch(student, n=3, size=128, seed=3)  # other boxes, other labels
    base = detection_loss(student, inputs, mark_unlabelled(samples, [1]))
    samples[1].gt_instances = other[1].gt_instances
    moved = detection_loss(student, inputs, samples)
    for key in base:
        assert torch.equal(torch.stack(list(base[key])), torch.stack(list(moved[key]))), key
    # the same image without the mark is a labelled one: its boxes count
    samples[1].set_metainfo(dict(unlabelled=False))
    labelled = detection_loss(student, inputs, samples)
    assert not torch.equal(torch.stack(list(base['loss_cls'])),
                           torch.stack(list(labelled['loss_cls'])))


def distiller(**kwargs):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    student, teacher = small_pair()
    torch.manual_seed(0)
    return MODELS.build(dict(type='VkDDistiller', student=student, teacher=teacher,
                             probe_size=(128, 128), **kwargs))


def test_distillation_gradients_reach_the_backbone_from_unlabelled_images():
    model = distiller(taps=['neck'])
    model.train()
    inputs, samples = detection_batch(model, n=2, size=128, seed=4)
    losses = model.loss(inputs, mark_unlabelled(samples, [0, 1]))  # no labelled image
    assert set(losses) == {'loss_detection', 'loss_vkd_neck', 'vkd_nonfinite_steps'}
    assert losses['loss_detection'].item() == 0.0 and losses['loss_vkd_neck'].item() > 0
    trained = model.student.backbone.layer2[0].conv1.weight  # (the stem and layer1 are frozen)
    (vkd_grad,) = torch.autograd.grad(losses['loss_vkd_neck'], trained, retain_graph=True)
    assert vkd_grad.abs().sum() > 0
    # the zero detection term still reaches the head (DDP sees every gradient)
    head = model.student.bbox_head.retina_cls.weight
    (zero,) = torch.autograd.grad(losses['loss_detection'], head)
    assert torch.count_nonzero(zero) == 0


def test_a_student_whose_loss_cannot_be_split_is_refused():
    from mmengine.hub import get_config
    from mmdet.registry import MODELS
    from vkd_mmdet.models.unlabelled_split import detection_loss
    cfg = get_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py').model
    cfg.backbone.update(depth=18, init_cfg=None)
    cfg.neck.in_channels = [64, 128, 256, 512]
    model = MODELS.build(cfg)
    inputs, samples = detection_batch(model, n=2, size=128, seed=5)
    model.loss(inputs, copy.deepcopy(samples))  # labelled batches train as before
    with pytest.raises(ValueError, match=r"the student FasterRCNN cannot be split so: it is "
                                         r"not a single-stage detector \(a two-stage detector"):
        detection_loss(model, inputs, mark_unlabelled(samples, [1]))


def coco128_images(tmp_path, n=3):
    """A folder of ``n`` real images, a stray non-image file beside them."""
    folder = tmp_path / 'raw_frames'
    folder.mkdir()
    for path in sorted((data_root() / 'coco128' / 'train2017').glob('*.jpg'))[:n]:
        shutil.copy(path, folder / path.name)
    (folder / 'notes.txt').write_text('not an image')
    return folder


TRAIN_PIPELINE = [dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='Resize', scale=(128, 128), keep_ratio=True),
                  dict(type='RandomFlip', prob=0.5),
                  dict(type='PackDetInputs')]


def test_a_folder_of_raw_images_and_a_coco_image_list(tmp_path):
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    import vkd_mmdet  # noqa: F401
    register_all_modules()
    folder = coco128_images(tmp_path)
    dataset = DATASETS.build(dict(type='UnlabelledImages', data_root=str(tmp_path),
                                  data_prefix=dict(img='raw_frames/'), pipeline=TRAIN_PIPELINE))
    assert len(dataset) == 3  # (notes.txt is not an image)
    info = dataset.get_data_info(0)
    from PIL import Image
    with Image.open(info['img_path']) as img:
        assert (info['width'], info['height']) == img.size
    sample = dataset[0]['data_samples']
    assert sample.metainfo['unlabelled'] is True and len(sample.gt_instances) == 0
    # a COCO json listing images only (a labelled json's images, its boxes dropped)
    coco = json.loads((data_root() / 'coco128' / 'annotations' /
                       'instances_train2017.json').read_text())
    names = {p.name for p in folder.glob('*.jpg')}
    listing = tmp_path / 'images_only.json'
    listing.write_text(json.dumps(dict(images=[i for i in coco['images']
                                               if i['file_name'] in names],
                                       categories=coco['categories'])))
    listed = DATASETS.build(dict(type='UnlabelledImages', data_root=str(tmp_path),
                                 ann_file='images_only.json', data_prefix=dict(img='raw_frames/'),
                                 pipeline=TRAIN_PIPELINE))
    assert len(listed) == 3 and listed[2]['data_samples'].metainfo['unlabelled'] is True
    with pytest.raises(FileNotFoundError, match=r"UnlabelledImages: image folder '.*nowhere/' "
                                                r"does not exist"):
        DATASETS.build(dict(type='UnlabelledImages', data_root=str(tmp_path),
                            data_prefix=dict(img='nowhere/'), pipeline=TRAIN_PIPELINE))


def mixed_runner_cfg(tmp_path, iters=2):
    """A VkD run on coco128: 2 labelled + 2 unlabelled images a batch."""
    from mmengine.config import Config
    from helpers import small_vkd_runner_cfg
    cfg = small_vkd_runner_cfg(tmp_path / 'work', size=128, batch=4, images=4)
    labelled = cfg.train_dataloader.dataset
    labelled.pipeline = TRAIN_PIPELINE
    folder = coco128_images(tmp_path, n=4)
    cfg.train_dataloader = dict(
        batch_size=4, num_workers=0, persistent_workers=False,
        sampler=dict(type='GroupMultiSourceSampler', batch_size=4, source_ratio=[1, 1]),
        dataset=dict(type='ConcatDataset', datasets=[
            labelled, dict(type='UnlabelledImages', data_root=str(tmp_path),
                           data_prefix=dict(img=folder.name + '/'),
                           pipeline=TRAIN_PIPELINE)]))
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=100)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, by_epoch=False)
    cfg.log_processor.by_epoch = False
    return Config(cfg.to_dict()) if not isinstance(cfg, Config) else cfg


def test_a_mixed_batch_trains_end_to_end_on_real_images(tmp_path):
    from mmengine.runner import Runner
    from vkd_mmdet.scalars import read_scalars
    runner = Runner.from_cfg(mixed_runner_cfg(tmp_path))
    seen = []
    model = runner.model
    original = model.loss

    def loss(inputs, samples):  # (records the batch, then trains as usual)
        seen.append([bool(s.metainfo.get('unlabelled')) for s in samples])
        return original(inputs, samples)
    model.loss = loss
    runner.train()
    assert seen == [[False, False, True, True]] * 2, seen
    records = [r for r in read_scalars(tmp_path / 'work') if 'loss' in r]
    assert len(records) == 2
    assert all(r['loss_vkd_neck'] > 0 and r['loss_cls'] > 0 for r in records), records


def unlabelled_config(tmp_path, name='vkd_retinanet_r50_unlabeled.py'):
    """The shipped config pointed at coco128: its labelled set, and a folder of its
    images as the unlabelled one."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(ROOT / 'configs' / name))
    coco = data_root() / 'coco128'
    labelled, unlabelled = cfg.train_dataloader.dataset.datasets
    labelled.update(data_root=f'{coco}/', ann_file='annotations/instances_train2017.json',
                    data_prefix=dict(img='train2017/'))
    unlabelled.update(data_root=str(tmp_path), data_prefix=dict(img='raw_frames/'))
    coco128_images(tmp_path, n=4)
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    return cfg


def test_the_shipped_config_mixes_two_labelled_and_two_unlabelled_images(tmp_path):
    from mmengine.runner import Runner
    from helpers import load_tool
    cfg = unlabelled_config(tmp_path)
    assert cfg.model.type == 'VkDDistiller' and cfg.train_cfg.type == 'IterBasedTrainLoop'
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batch = next(iter(loader))
    assert [s.metainfo.get('unlabelled', False) for s in batch['data_samples']] == \
        [False, False, True, True]
    mix = '\n'.join(load_tool('inspect_distill').training_mix(cfg))
    assert '2 from CocoDataset' in mix and '(labelled: detection loss and distillation terms)' in mix
    assert '2 from UnlabelledImages' in mix and '(unlabelled: distillation terms only)' in mix
    assert 'the detection loss sees 2 of the 4 images a batch, every distillation tap all 4' in mix


def test_inspect_refuses_a_two_stage_student_with_unlabelled_images(tmp_path):
    from mmengine.config import Config
    from helpers import load_tool
    cfg = Config.fromfile(str(ROOT / 'configs' / 'vkd_faster-rcnn_r50.py'))
    cfg.train_dataloader = unlabelled_config(tmp_path).train_dataloader
    with pytest.raises(SystemExit, match=r'inspect_distill.py: VkDDistiller: the batch holds '
                                         r'unlabelled images .* the student FasterRCNN cannot '
                                         r'be split so'):
        load_tool('inspect_distill').inspect(cfg, (800, 1333))
