"""The face-mask cpu-hires protocol: the teacher at 640 px, the student at 320 px on the
same batch downscaled 2x (every student alike), levels paired by size."""
import pytest

from helpers import data_root, load_benchmark

TEACHER = dict(checkpoint='/teacher.pth', sha256='ab' * 32)


def spec_and_config(bench, method, teacher=TEACHER):
    spec = bench.run_spec(method, 0, 'cpu-hires', data_root() / 'facemask',
                          None if method == 'teacher' else teacher)
    return spec, bench.build_config(spec, teacher_cache_dir='/features')


def scales(cfg):
    return (tuple(cfg.train_dataloader.dataset.pipeline[2].scale),
            tuple(cfg.val_dataloader.dataset.pipeline[1].scale))


def test_the_teacher_trains_and_validates_at_640_px_with_a_checkpoint_every_epoch():
    bench = load_benchmark('bench_facemask')
    spec, cfg = spec_and_config(bench, 'teacher')
    assert scales(cfg) == ((640, 640), (640, 640))
    assert cfg.train_cfg.max_epochs == 6 and cfg.train_cfg.val_interval == 3
    assert cfg.default_hooks.checkpoint.interval == 1
    assert 'student_input_scale' not in spec


def test_every_student_loads_at_640_trains_at_320_and_validates_at_320():
    bench = load_benchmark('bench_facemask')
    plain_spec, plain = spec_and_config(bench, 'none')
    assert scales(plain) == ((640, 640), (320, 320)) and plain.train_cfg.max_epochs == 12
    assert plain.model.data_preprocessor.batch_augments == [
        dict(type='RescaleBatch', scale_factor=0.5)]
    spec, vkd = spec_and_config(bench, 'vkd')
    assert scales(vkd) == ((640, 640), (320, 320))
    # (VkDDistiller, its teacher's maps read off disk once computed)
    assert vkd.model.type == 'CachedTeacherDistiller' and vkd.model.student_input_scale == 0.5
    assert vkd.model.teacher_cache_dir == '/features'
    assert 'batch_augments' not in vkd.model.student.data_preprocessor  # the distiller does it
    assert [h['type'] for h in vkd.custom_hooks][0] == 'TeacherCheckHook'
    assert spec['teacher_sha256'] == TEACHER['sha256'] and spec['teacher_ckpt'] == '/teacher.pth'
    with pytest.raises(SystemExit, match=r"MMRazor's distillers feed both models one tensor"):
        spec_and_config(bench, 'mmrazor_pkd')


def test_the_protocols_pair_meets_p3_p6_with_p4_p7_for_features_and_predictions():
    """The real Lite0 / Lite2 pair of the protocol (ImageNet weights from the packages)."""
    from mmdet.registry import MODELS
    import vkd_mmdet  # noqa: F401
    import benchmarks.efficientnet_lite  # noqa: F401
    import benchmarks.teacher_feature_cache  # noqa: F401
    bench = load_benchmark('bench_facemask')
    cfg = spec_and_config(bench, 'vkd_pm', dict(checkpoint=None))[1]
    model = MODELS.build(cfg.model)
    for key in ('neck', 'bbox_head_retina_cls'):
        pairing = model.level_pairings[key]
        assert (pairing.student, pairing.teacher) == ([0, 1, 2, 3], [1, 2, 3, 4]), key
        assert pairing.how == 'size'
