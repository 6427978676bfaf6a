"""OrthogonalProjector: the constraint holds at init and after aggressive training."""
import copy

import pytest
import torch

from vkd_mmdet.models import OrthogonalProjector

SHAPES = {'square': (64, 64), 'tall': (32, 128), 'wide': (96, 48)}  # (in, out)


def gram_error(proj: OrthogonalProjector) -> float:
    w = proj.weight.detach()
    gram = w.t() @ w if proj.out_channels >= proj.in_channels else w @ w.t()
    return (gram - torch.eye(gram.shape[0])).abs().max().item()


@pytest.mark.parametrize('kind', SHAPES)
def test_orthonormal_at_init_and_after_200_sgd_steps_lr1(kind):
    torch.manual_seed(0)
    c_in, c_out = SHAPES[kind]
    if c_in > c_out:
        with pytest.warns(UserWarning, match='discards'):
            proj = OrthogonalProjector(c_in, c_out, affine=True)
    else:
        proj = OrthogonalProjector(c_in, c_out, affine=True)
    assert proj.weight.shape == (c_out, c_in)
    assert gram_error(proj) < 1e-5
    assert proj.orthogonality_error() < 1e-5

    target = torch.randn(8, c_out, 5, 5)
    opt = torch.optim.SGD(proj.parameters(), lr=1.0)
    for _ in range(200):
        x = torch.randn(8, c_in, 5, 5)
        loss = torch.nn.functional.mse_loss(proj(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(proj.weight).all()
    assert gram_error(proj) < 1e-5, f'{kind}: constraint drifted'


def test_shapes_and_isometry_of_tall_map():
    torch.manual_seed(0)
    proj = OrthogonalProjector(16, 40)
    x4 = torch.randn(2, 16, 3, 5)
    y4 = proj(x4)
    assert y4.shape == (2, 40, 3, 5)
    # An isometric embedding preserves per-position norms.
    torch.testing.assert_close(y4.norm(dim=1), x4.norm(dim=1), rtol=1e-5, atol=1e-5)
    assert proj(torch.randn(2, 7, 16)).shape == (2, 7, 40)  # tokens (N, L, C)
    assert proj(torch.randn(2, 16)).shape == (2, 40)  # pooled (N, C)
    # Same map for every layout: the 4-D result equals the token result.
    tokens = x4.flatten(2).transpose(1, 2)
    torch.testing.assert_close(proj(tokens), y4.flatten(2).transpose(1, 2))


def test_square_map_is_orthogonal_with_both_maps():
    for orth_map in ('qr', 'matrix_exp'):
        proj = OrthogonalProjector(32, 32, orthogonal_map=orth_map)
        assert gram_error(proj) < 1e-5, orth_map
        w = proj.weight.detach()
        assert (w @ w.t() - torch.eye(32)).abs().max() < 1e-5


def test_weight_is_float32_under_bf16_autocast():
    proj = OrthogonalProjector(8, 24, affine=True)
    x = torch.randn(2, 8, 4, 4)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = proj(x.bfloat16())
        assert y.dtype == torch.float32
    assert gram_error(proj) < 1e-5


def test_affine_is_optional_and_bad_arguments_fail_clearly():
    assert OrthogonalProjector(8, 8, affine=False).scale is None
    names = {n for n, _ in OrthogonalProjector(8, 8, affine=True).named_parameters()}
    assert {'scale', 'bias'} <= names
    with pytest.raises(ValueError, match='orthogonal_map'):
        OrthogonalProjector(8, 8, orthogonal_map='nope')
    with pytest.raises(ValueError, match='expects 8 channels'):
        OrthogonalProjector(8, 16)(torch.randn(1, 9, 2, 2))


class _Distiller(torch.nn.Module):
    """The parameter layout of VkDDistiller: projectors under ``distill_losses``."""

    def __init__(self, orthogonal_map):
        super().__init__()
        self.student = torch.nn.Conv2d(8, 8, 1)
        self.distill_losses = torch.nn.ModuleList([
            OrthogonalProjector(8, 8, orthogonal_map=orthogonal_map),
            OrthogonalProjector(8, 16, orthogonal_map=orthogonal_map)])


def train_three_mmdet_steps(model, optim_cfg):
    """3 SGD steps with mmdet's defaults, through mmengine's optimizer builder."""
    from mmengine.optim import build_optim_wrapper
    wrapper = build_optim_wrapper(model, optim_cfg)
    torch.manual_seed(0)
    for _ in range(3):
        x = torch.randn(4, 8, 3, 3)
        loss = sum((p(model.student(x)) - 1).square().mean() for p in model.distill_losses)
        wrapper.update_params(loss)
    return max(p.orthogonality_error() for p in model.distill_losses)


@pytest.mark.parametrize('orth_map', ['qr', 'matrix_exp', 'cayley', 'householder'])
def test_every_map_stays_orthogonal_under_the_default_weight_decay(orth_map):
    from mmengine.config import Config
    from vkd_mmdet.optim import exclude_projectors_from_weight_decay
    optim = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9,
                                                     weight_decay=1e-4))
    cfg = Config(dict(optim_wrapper=optim))
    assert 'not weight-decayed' in exclude_projectors_from_weight_decay(cfg)
    torch.manual_seed(0)
    assert train_three_mmdet_steps(_Distiller(orth_map), cfg.optim_wrapper) < 1e-5
    if orth_map == 'householder':
        # What the default prevents: decayed, torch's Householder map collapses.
        torch.manual_seed(0)
        assert train_three_mmdet_steps(_Distiller(orth_map), copy.deepcopy(optim)) > 0.5


def test_projector_weight_decay_default_respects_the_config():
    from mmengine.config import Config
    from vkd_mmdet.optim import exclude_projectors_from_weight_decay
    rtmdet_like = Config(dict(optim_wrapper=dict(
        optimizer=dict(type='AdamW', lr=0.004, weight_decay=0.05),
        paramwise_cfg=dict(norm_decay_mult=0, bypass_duplicate=True))))
    exclude_projectors_from_weight_decay(rtmdet_like)
    assert rtmdet_like.optim_wrapper.paramwise_cfg == dict(
        norm_decay_mult=0, bypass_duplicate=True,
        custom_keys=dict(distill_losses=dict(decay_mult=0.0)))
    mine = Config(dict(optim_wrapper=dict(
        optimizer=dict(type='SGD', lr=0.01, weight_decay=1e-4),
        paramwise_cfg=dict(custom_keys=dict(distill_losses=dict(decay_mult=0.5))))))
    assert 'kept as given' in exclude_projectors_from_weight_decay(mine)
    assert mine.optim_wrapper.paramwise_cfg.custom_keys.distill_losses.decay_mult == 0.5
    no_decay = Config(dict(optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01))))
    assert 'no weight decay' in exclude_projectors_from_weight_decay(no_decay)
    assert 'paramwise_cfg' not in no_decay.optim_wrapper
