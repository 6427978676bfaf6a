"""tools/inspect_distill.py: a dry run of a config, no data and no teacher weights."""
import subprocess
import sys

from helpers import ROOT, subclassed_distiller_config

TOOL = str(ROOT / 'tools' / 'inspect_distill.py')


def run(*args, env=None):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env=env)


def test_inspect_prints_every_pair_with_shapes_projectors_and_memory():
    proc = run(str(ROOT / 'configs' / 'vkd_retinanet_r50.py'), '--probe-size', '128', '128')
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "teacher_ckpt 'https://download.openmmlab.com" in out and 'not loaded' in out
    assert "tap 'backbone': student 'backbone' -> teacher 'backbone'" in out
    assert "tap 'neck'" in out and 'paired by index (same strides)' in out
    assert 'paired as given' not in out
    # R50 stage C5 (2048) into X101's C5 (2048), and the 5 FPN levels 256 -> 256.
    assert ('level 3<->3: student (1, 2048, 4, 4) stride 32, teacher (1, 2048, 4, 4) stride 32; '
            'OrthogonalProjector 2048->2048 (orthogonal, map=qr, affine=False), 4,194,304 '
            'parameters; norm=standardize (both), loss=smooth_l1, weight=4.0, recompute=True') in out
    assert out.count('OrthogonalProjector 256->256') == 6  # C2 and the 5 FPN levels
    assert 'no teacher_ckpt given' not in proc.stdout + proc.stderr
    assert 'total: 9 level pairs' in out and 'MiB per image' in out


def test_inspect_fails_with_the_message_training_gives():
    proc = run(str(ROOT / 'configs' / 'vkd_retinanet_r50.py'), '--cfg-options', 'model.taps=[nek]')
    assert proc.returncode != 0
    assert "VkD tap: the student has no module 'nek'" in proc.stderr
    proc = run(str(ROOT / 'configs' / 'nope.py'))
    assert proc.returncode != 0 and 'nope.py does not exist' in proc.stderr


def test_inspect_shows_the_size_based_pairs_of_a_teacher_at_twice_the_input():
    proc = run(str(ROOT / 'configs' / 'vkd_retinanet_r50.py'), '--probe-size', '128', '128',
               '--cfg-options', 'model.teacher_input_scale=2.0', 'model.taps=[neck]')
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert 'inputs resized for the student 1x, for the teacher 2x (levels pair by map size)' in out
    assert ('0↔1 (stride 8/16 on their inputs, 8 on the loaded batch), 1↔2 (stride 16/32 on '
            'their inputs, 16 on the loaded batch)') in out
    assert 'paired by map size; unused strides: student [128], teacher [8]' in out
    assert 'level 0<->1: student (1, 256, 16, 16) stride 8, teacher (1, 256, 16, 16) stride 16' in out


def test_inspect_takes_a_registered_subclass_of_the_distiller(tmp_path):
    config, env = subclassed_distiller_config(tmp_path)
    proc = run(config, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'student: RetinaNet, teacher: RetinaNet' in proc.stdout
