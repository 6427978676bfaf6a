"""The orthogonal maps computed ahead of the forward passes (maps_ahead.py): same
loss and gradients as in place, each map once per step, before the teacher runs."""
import copy

import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile

from helpers import detection_batch
from vkd_mmdet.models import VkDDistiller
from vkd_mmdet.models.maps_ahead import MapsAhead
from vkd_mmdet.models.vkd_loss import VkDLoss


def _features(seed):
    g = torch.Generator().manual_seed(seed)
    student = [torch.randn(2, 8, 6, 5, generator=g, requires_grad=True) for _ in range(2)]
    teacher = [torch.randn(2, 16, 6, 5, generator=g) for _ in range(2)]
    return student, teacher


def test_maps_ahead_give_the_loss_and_gradients_of_maps_computed_in_place():
    torch.manual_seed(0)
    losses = nn.ModuleDict({'neck': nn.ModuleList([VkDLoss(8, 16), VkDLoss(8, 16)])})
    for loss in losses['neck']:  # away from the identity-like initial map
        with torch.no_grad():
            loss.projector.linear.parametrizations.weight.original.add_(
                0.3 * torch.randn(16, 8))
    results = []
    for ahead in (False, True):
        losses.zero_grad()
        student, teacher = _features(1)
        maps = MapsAhead(losses, 'cpu')['neck'] if ahead else [None, None]
        total = sum(loss(s, t, weight=w)
                    for loss, s, t, w in zip(losses['neck'], student, teacher, maps))
        total.backward()
        results.append((total.detach(), [s.grad for s in student],
                        [p.grad.clone() for p in losses.parameters()]))
    (ref, ref_s, ref_p), (got, got_s, got_p) = results
    assert torch.equal(got, ref)
    for a, b in zip(got_s + got_p, ref_s + ref_p):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert all(g.abs().sum() > 0 for g in got_p)  # the maps' gradients reach the parameters


def test_the_distiller_runs_each_map_once_before_the_teacher(small_pair):
    student, teacher = small_pair
    model = VkDDistiller(student=copy.deepcopy(student), teacher=copy.deepcopy(teacher),
                         taps=['backbone[3]', 'neck'], probe_size=(128, 128))
    model.train()
    inputs, samples = detection_batch(model)
    levels = sum(len(losses) for losses in model.distill_losses.values())
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        losses = model.loss(inputs, samples)
        sum(v for k, v in losses.items() if k.startswith('loss_vkd')).backward()
    events = prof.events()
    qrs = [e for e in events if e.name == 'aten::linalg_qr']
    assert len(qrs) == levels == 6  # once each: not again inside the recomputed side
    ranges = {e.name: e.time_range for e in events if e.name.startswith('vkd:')}
    maps, teacher_range = ranges['vkd:orthogonal_maps'], ranges['vkd:teacher']
    assert maps.end <= teacher_range.start
    assert all(maps.start <= e.time_range.start <= maps.end for e in qrs)
    grads = [p.grad for p in model.distill_losses.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
