"""The few-labels protocol at toy size, through the benchmark's own script: the
committed split, a teacher on the labelled part only, a distilled student on labelled
and unlabelled images, pseudo-labels from the teacher, and no label of the unlabelled
part anywhere."""
import json
import os
import subprocess
import sys

from helpers import ROOT, data_root

sys.path.insert(0, str(ROOT))


def test_the_split_is_committed_disjoint_and_covers_the_training_set():
    from benchmarks.fewlabels_split import SPLIT_FILE, load_split
    split = load_split(SPLIT_FILE)
    train = json.loads((data_root() / 'facemask' / 'annotations' / 'custom_train.json')
                       .read_text())
    ids = {img['id'] for img in train['images']}
    assert set(split['labelled']) | set(split['unlabelled']) == ids
    assert not set(split['labelled']) & set(split['unlabelled'])
    assert len(split['labelled']) == round(0.25 * len(ids))


def test_the_fewlabels_protocol_at_toy_size(tmp_path):
    out, cache = tmp_path / 'out', tmp_path / 'cache'
    proc = subprocess.run(
        [sys.executable, 'benchmarks/bench_facemask.py', '--protocol', 'fewlabels-toy',
         '--methods', 'vkd_lu', 'pseudo_labels', '--seeds', '0', '--jobs', '2',
         '--data-root', str(data_root() / 'facemask'), '--cache', str(cache), '--out', str(out)],
        cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from benchmarks.fewlabels_split import SPLIT_FILE, load_split
    split = load_split(SPLIT_FILE)
    unlabelled = set(split['unlabelled'])
    # U's file lists its images and no box; L's holds L's images and boxes only
    u_file = json.loads((cache / 'splits' / 'facemask_fewlabels' / 'unlabelled.json').read_text())
    assert 'annotations' not in u_file
    assert {img['id'] for img in u_file['images']} == unlabelled
    l_file = json.loads((cache / 'splits' / 'facemask_fewlabels' / 'labelled.json').read_text())
    assert {a['image_id'] for a in l_file['annotations']} <= set(split['labelled'])
    # the teacher and the students' detection loss read L's file; U only as unlabelled
    specs = {p.parent.name.split('_s0_')[0]: json.loads(p.read_text())
             for p in cache.glob('*/spec.json')}
    for name, spec in specs.items():
        assert spec['options']['train_dataloader.dataset.ann_file'].endswith('labelled.json')
    assert specs['vkd_lu']['unlabelled_ann'].endswith('unlabelled.json')
    # the pseudo-labels are the teacher's boxes on U's images only
    pseudo = json.loads(open(specs['pseudo_labels']['pseudo_ann']).read())
    assert pseudo['annotations'] and {a['image_id'] for a in pseudo['annotations']} <= unlabelled
    assert all('score' in a for a in pseudo['annotations'])
    teacher = json.loads((out / 'fewlabels-toy_teacher_s0.json').read_text())
    for method in ('vkd_lu', 'pseudo_labels'):
        result = json.loads((out / f'fewlabels-toy_{method}_s0.json').read_text())
        assert [v['iteration'] for v in result['per_validation']] == [2, 4], result
        assert result['teacher_sha256'] and result['iters'] == 4
    vkd = json.loads((out / 'fewlabels-toy_vkd_lu_s0.json').read_text())
    assert vkd['final_losses']['loss_vkd_neck'] > 0
    assert teacher['method'] == 'teacher'
    report = (out / 'report_fewlabels-toy.md').read_text()
    assert 'VkD (plugin defaults) on L and unlabelled U' in report
    assert (out / 'map_per_validation_fewlabels-toy.png').is_file()
