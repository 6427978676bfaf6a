"""Normalisations and the VkD loss: statistics, zero loss, finiteness, gradients."""
import pytest
import torch

from vkd_mmdet.models import VkDLoss, normalize


def test_standardize_gives_per_channel_zero_mean_unit_std():
    x = torch.randn(4, 16, 7, 9) * torch.linspace(0.1, 10, 16)[None, :, None, None] + 3
    y = normalize(x, 'standardize', channel_dim=1)
    per_channel = y.transpose(0, 1).reshape(16, -1)
    assert per_channel.mean(1).abs().max() < 1e-4
    assert (per_channel.std(1, unbiased=False) - 1).abs().max() < 1e-4


@pytest.mark.parametrize('shape,channel_dim', [((3, 6, 5, 7), 1), ((3, 10, 6), -1),
                                               ((40, 6), -1), ((1, 6, 1, 1), 1)])
def test_standardize_is_the_formula_in_value_and_gradient(shape, channel_dim):
    """``standardize`` runs as one fused batch-norm kernel where a channel has more than
    one value: it must be ``(x - mean) * rsqrt(var + eps)``, biased variance, per channel
    of ``channel_dim``, in value and in gradient (to float32 rounding: it computes in
    float32). One channel is nearly constant, where ``eps`` shows."""
    from vkd_mmdet.models.feature_norm import STANDARDIZE_EPS, standardize
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64) * 2 + 1
    x.select(channel_dim, 2).mul_(1e-3)
    cdim = channel_dim % x.dim()
    dims = tuple(d for d in range(x.dim()) if d != cdim)

    def formula(v):
        var, mean = torch.var_mean(v, dim=dims, correction=0, keepdim=True)
        return (v - mean) * torch.rsqrt(var + STANDARDIZE_EPS)

    weights = torch.randn(shape, dtype=torch.float64)
    results = []
    for f in (formula, lambda v: standardize(v, channel_dim)):
        leaf = x.clone().requires_grad_()
        out = f(leaf)
        (out * weights).sum().backward()
        results.append((out.detach(), leaf.grad))
    (ref, ref_grad), (got, got_grad) = results
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_layernorm_gives_per_position_zero_mean_unit_std():
    x = torch.randn(3, 10, 32) * 5 + 2  # tokens (N, L, C)
    y = normalize(x, 'layernorm', channel_dim=-1)
    assert y.mean(-1).abs().max() < 1e-4
    assert (y.std(-1, unbiased=False) - 1).abs().max() < 1e-3


def test_whiten_gives_identity_covariance_and_survives_rank_deficiency():
    torch.manual_seed(0)
    # Full rank and correlated: a random rotation with singular values 0.5..3.
    rotation, _ = torch.linalg.qr(torch.randn(24, 24))
    mix = rotation * torch.linspace(0.5, 3.0, 24)
    x = (torch.randn(4096, 24) @ mix) + 1.5  # (N, C)
    y = normalize(x, 'whiten', channel_dim=-1)
    cov = (y - y.mean(0)).t() @ (y - y.mean(0)) / y.shape[0]
    assert (cov - torch.eye(24)).abs().max() < 1e-3
    assert y.mean(0).abs().max() < 1e-4

    # 6 positions, 24 channels: rank <= 5. Output and gradient must stay finite.
    few = torch.randn(1, 24, 2, 3, requires_grad=True)
    out = normalize(few, 'whiten', channel_dim=1)
    out.square().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(few.grad).all()


@pytest.mark.parametrize('norm', ['standardize', 'layernorm', 'whiten', 'none'])
def test_loss_is_zero_when_projected_student_equals_teacher(norm):
    torch.manual_seed(0)
    loss = VkDLoss(16, 32, norm=norm)
    student = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        teacher = loss.projector(student)
    assert loss(student, teacher).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize('norm', ['standardize', 'layernorm', 'whiten', 'none'])
def test_constant_inputs_and_single_position_give_finite_loss_and_grads(norm):
    loss = VkDLoss(8, 16, norm=norm)
    for shape in [(2, 8, 4, 4), (1, 8, 1, 1)]:
        student = torch.full(shape, 3.0, requires_grad=True)
        teacher = torch.full((shape[0], 16, *shape[2:]), -2.0)
        value = loss(student, teacher)
        value.backward()
        assert torch.isfinite(value), (norm, shape)
        assert torch.isfinite(student.grad).all(), (norm, shape)
        for name, p in loss.named_parameters():
            assert torch.isfinite(p.grad).all(), (norm, shape, name)
        loss.zero_grad()


def test_zero_variance_channel_is_finite():
    loss = VkDLoss(8, 8)
    student = torch.randn(2, 8, 5, 5, requires_grad=True)
    teacher = torch.randn(2, 8, 5, 5)
    teacher[:, 3] = 7.0  # a dead teacher channel
    value = loss(student, teacher)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()


@pytest.mark.parametrize('norm,norm_side', [('standardize', 'both'), ('none', 'both'),
                                            ('layernorm', 'teacher'), ('whiten', 'both')])
def test_every_learnable_parameter_gets_a_nonzero_gradient(norm, norm_side):
    torch.manual_seed(0)
    loss = VkDLoss(12, 24, norm=norm, norm_side=norm_side)
    student = torch.randn(3, 12, 6, 6)
    teacher = torch.randn(3, 24, 6, 6)
    loss(student, teacher).backward()
    params = dict(loss.named_parameters())
    assert params, 'no learnable parameters'
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize('norm,norm_side', [('standardize', 'both'), ('standardize', 'teacher'),
                                            ('layernorm', 'teacher'), ('none', 'both')])
def test_no_affine_unless_asked_so_the_projection_stays_an_isometry(norm, norm_side):
    loss = VkDLoss(8, 16, norm=norm, norm_side=norm_side)
    assert dict(loss.named_parameters()).keys() == {'projector.linear.parametrizations.weight.original'}
    x = torch.randn(2, 8, 3, 3)
    torch.testing.assert_close(loss.projector(x).norm(dim=1), x.norm(dim=1))
    asked = VkDLoss(8, 16, norm=norm, norm_side=norm_side, affine=True)
    assert {'projector.scale', 'projector.bias'} <= dict(asked.named_parameters()).keys()


def test_finite_under_bf16_autocast_and_resizes_student_to_teacher():
    torch.manual_seed(0)
    loss = VkDLoss(16, 32, loss='mse', loss_weight=4.0)
    student = torch.randn(2, 16, 10, 10, requires_grad=True)
    teacher = torch.randn(2, 32, 20, 20)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        value = loss(student.bfloat16(), teacher.bfloat16())
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(student.grad).all()


def test_loss_options_and_errors():
    s, t = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    one = VkDLoss(8, 8, loss='l1', projection='none')(s, t)
    two = VkDLoss(8, 8, loss='l1', projection='none', loss_weight=2.0)(s, t)
    torch.testing.assert_close(two, 2 * one)
    mse = VkDLoss(8, 8, loss='mse', norm='none', projection='none')(s, t)
    torch.testing.assert_close(mse, torch.nn.functional.mse_loss(s, t))
    with pytest.raises(ValueError, match="unknown loss='huber'"):
        VkDLoss(8, 8, loss='huber')
    with pytest.raises(ValueError, match='equal channel counts'):
        VkDLoss(8, 16, projection='none')
    with pytest.raises(ValueError, match="align='none'"):
        VkDLoss(8, 8, align='none')(s, torch.randn(2, 8, 8, 8))


def kept_for_backward(fn):
    """``fn()`` and the bytes autograd keeps for its backward (outside recomputed regions)."""
    kept = []

    def pack(tensor):
        kept.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn()
    return out, sum(kept)


@pytest.mark.parametrize('projection', ['orthogonal', 'linear'])
def test_recompute_keeps_no_float32_intermediates_and_changes_nothing(projection):
    torch.manual_seed(0)
    kept_all = VkDLoss(32, 64, projection=projection, recompute=False)
    recomputed = VkDLoss(32, 64, projection=projection)  # the default
    recomputed.load_state_dict(kept_all.state_dict())
    student = torch.randn(4, 32, 40, 40, requires_grad=True)
    teacher = torch.randn(4, 64, 20, 20)  # resized inside: the alignment is recomputed too
    results = []
    for loss in (kept_all, recomputed):
        value, kept = kept_for_backward(lambda: loss(student, teacher))
        value.backward()
        grads = [student.grad.clone()] + [p.grad.clone() for p in loss.parameters()]
        student.grad = None
        results.append((value.detach(), kept, grads))
    (v_all, kept_a, g_all), (v_re, kept_r, g_re) = results
    torch.testing.assert_close(v_re, v_all, rtol=1e-6, atol=0)
    for a, b in zip(g_all, g_re):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-8)
    one_map = 4 * 64 * 20 * 20 * 4  # one float32 map of the compared size
    assert kept_a >= 3 * one_map  # projection, standardised sides, their difference...
    # Recomputed: references to its two inputs (the student's map is kept by the
    # student's own graph anyway) and at most the orthogonal map's small matrices.
    inputs = sum(t.numel() * t.element_size() for t in (student, teacher))
    assert kept_r - inputs <= 4 * (64 * 32 * 4)  # a few 64x32 float32 matrices


def test_recompute_runs_the_orthogonal_map_once_per_step():
    loss = VkDLoss(16, 32)
    calls = []
    loss.projector.linear.parametrizations.weight[0].register_forward_hook(
        lambda *args: calls.append(1))
    loss(torch.randn(2, 16, 8, 8, requires_grad=True), torch.randn(2, 32, 8, 8)).backward()
    assert len(calls) == 1
