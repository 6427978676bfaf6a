"""benchmarks/feature_alignment.py: its closed forms against a direct fit on the data."""
import torch

from benchmarks.feature_alignment import CrossMoments, alignment


def _standardized(x):  # (C, P): each channel to mean 0, variance 1 over positions
    return (x - x.mean(1, keepdim=True)) / x.std(1, correction=0, keepdim=True)


def test_the_closed_forms_equal_fits_on_the_standardised_features():
    """Shares gathered over two batches equal an explicit Procrustes fit, a least-squares
    fit and a PCA of the standardised features, all on the data at once."""
    torch.manual_seed(0)
    teacher = torch.einsum('oc,nchw->nohw', torch.randn(16, 16),
                           torch.randn(4, 16, 6, 6) * 3 * torch.rand(1, 16, 1, 1))
    student = 2 * teacher[:, :8] + 0.5 * torch.randn(4, 8, 6, 6) + 7  # offset: means matter
    moments = CrossMoments()
    moments.add(student[:2], teacher[:2])
    moments.add(student[2:], teacher[2:])
    got = alignment(moments)

    s = _standardized(student.double().transpose(0, 1).flatten(1))
    t = _standardized(teacher.double().transpose(0, 1).flatten(1))
    u, _, vh = torch.linalg.svd(t @ s.T, full_matrices=False)
    procrustes = u @ vh  # (16, 8), orthonormal columns
    linear = torch.linalg.lstsq(s.T, t.T).solution.T

    def explained(w):
        return float(1 - ((t - w @ s) ** 2).sum() / (t ** 2).sum())
    pca = torch.linalg.eigvalsh(t @ t.T / t.shape[1]).flip(0)[:8].sum() / 16
    assert abs(got['r2_orthonormal'] - explained(procrustes)) < 1e-6
    assert abs(got['r2_linear'] - explained(linear)) < 1e-6
    assert abs(got['ceiling'] - float(pca)) < 1e-6
    assert got['r2_orthonormal'] < got['r2_linear'] < got['ceiling'] < 1
    assert got['positions'] == 4 * 36


def test_a_folder_that_is_not_a_finished_run_is_refused_with_why(tmp_path):
    import json
    import pytest
    from benchmarks.feature_alignment import student_files, teacher_checkpoint
    running = tmp_path / 'vkd_s0_running'
    running.mkdir()
    with pytest.raises(SystemExit, match=r'vkd_s0_running is not a finished bench_facemask '
                                         r'run \(no result.json\)'):
        student_files(running)
    failed = tmp_path / 'teacher_s0_failed'
    failed.mkdir()
    (failed / 'result.json').write_text(json.dumps(dict(method='teacher', failed=True,
                                                        error='RuntimeError: out of memory')))
    with pytest.raises(SystemExit, match=r'teacher_s0_failed failed \(RuntimeError: out of '
                                         r'memory\); it has no model to measure'):
        teacher_checkpoint([], teacher=str(failed))
