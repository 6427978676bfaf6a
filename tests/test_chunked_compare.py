"""VkDLoss compares big maps a few images at a time (``chunk_elements``): the same loss
and gradients as the whole map, and no full-size float32 intermediate."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vkd_mmdet.models.blockwise_compare import block_count
from vkd_mmdet.models.vkd_loss import VkDLoss


def _pair(cls_kwargs, chunk_elements):
    torch.manual_seed(1)
    whole = VkDLoss(8, 16, chunk_elements=None, **cls_kwargs)
    blocks = VkDLoss(8, 16, chunk_elements=chunk_elements, **cls_kwargs)
    blocks.load_state_dict(whole.state_dict())
    with torch.no_grad():  # a map away from the initial one
        for p in whole.parameters():
            p.add_(0.2 * torch.randn_like(p))
    blocks.load_state_dict(whole.state_dict())
    return whole, blocks


@pytest.mark.parametrize('kwargs', [
    dict(),  # the detection default: standardise both sides, smooth-L1
    dict(loss='mse', align='teacher_to_student'),
    dict(norm_side='teacher', projection='linear'),
    dict(norm='none', loss='l1'),
])
def test_maps_compared_in_blocks_give_the_whole_maps_loss_and_gradients(kwargs):
    whole, blocks = _pair(kwargs, chunk_elements=500)
    g = torch.Generator().manual_seed(2)
    student = (torch.randn(5, 8, 6, 7, generator=g) * 3 + 1).requires_grad_()
    teacher = torch.randn(5, 16, 12, 14, generator=g) * 2 - 1  # resized inside
    assert block_count(blocks, student, teacher) == 5 and block_count(whole, student, teacher) == 1
    results = []
    for loss in (whole, blocks):
        student.grad = None
        value = loss(student, teacher)
        value.backward()
        results.append([value.detach(), student.grad.clone()]
                       + [p.grad.clone() for p in loss.parameters()])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert all(p.grad.abs().sum() > 0 for p in blocks.parameters())


class LargestFloat32Output(TorchDispatchMode):
    """The largest float32 tensor any aten op returns while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if torch.is_tensor(t) and t.dtype == torch.float32:
                self.largest = max(self.largest, t.numel())
        return out


def test_blocks_hold_no_full_size_float32_map():
    """A half-precision map (as under AMP) of 4 images: compared whole, its float32
    copies are full-size; in blocks of one image, none is larger than one image's."""
    torch.manual_seed(0)
    student = torch.randn(4, 16, 20, 20).half().requires_grad_()
    teacher = torch.randn(4, 32, 20, 20).half()
    one_image = 32 * 20 * 20
    largest = {}
    for chunk_elements in (None, one_image):
        loss = VkDLoss(16, 32, chunk_elements=chunk_elements)
        with LargestFloat32Output() as seen:
            loss(student, teacher).backward()
        largest[chunk_elements] = seen.largest
    assert largest[None] == 4 * one_image
    assert largest[one_image] == one_image


@pytest.mark.parametrize('bad', [0, -5, 'big', 1.5e7, True])
def test_chunk_elements_must_be_a_positive_whole_number(bad):
    with pytest.raises(ValueError, match=rf'chunk_elements={bad!r}; give a positive element count'):
        VkDLoss(8, 8, chunk_elements=bad)


def test_the_teachers_statistics_pass_resizes_nothing():
    """Student maps resized to the teacher's size: once per block for the student's
    statistics and once per block for the loss; the teacher's statistics need none."""
    torch.manual_seed(0)
    student = torch.randn(4, 3, 8, 8, requires_grad=True)
    teacher = torch.randn(4, 5, 16, 16)
    loss = VkDLoss(3, 5, chunk_elements=5 * 16 * 16)
    assert block_count(loss, student, teacher) == 4
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        loss(student, teacher)
    resizes = [e for e in prof.events() if e.name == 'aten::upsample_bilinear2d']
    assert len(resizes) == 2 * 4
