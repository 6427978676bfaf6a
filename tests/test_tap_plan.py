"""The tap plan: taps resolved once, the user's specs untouched, checkpoints laid out
as before the plan existed, and a training step that reads in one screen."""
import dataclasses
import inspect
import json

import pytest

from helpers import ROOT, small_pair
from vkd_mmdet.models import VkDDistiller
from vkd_mmdet.models.taps import parse_taps

LAYOUT = ROOT / 'tests' / 'data' / 'checkpoint_layout_before_plan.json'


def test_the_plan_resolves_levels_without_changing_the_users_taps():
    student, teacher = small_pair()
    taps = ['neck', dict(module='backbone', name='b')]
    # At 2x input the teacher's P4-P7 meet the student's P3-P6 (pairing by map size),
    # levels the user never wrote: they live in the plan, not in the specs.
    model = VkDDistiller(student, teacher, taps=taps, probe_size=(128, 128),
                         teacher_input_scale=2.0)
    assert model.level_pairings['neck'].teacher == [1, 2, 3, 4]
    assert model.tap_specs == parse_taps(taps)
    assert model.tap_specs[0].teacher_levels is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.tap_specs[0].teacher_levels = [0]
    assert [t.channels for t in model.plan.taps][0] == ((64, 128), ) * 4


def test_checkpoints_keep_the_layout_of_earlier_versions():
    """Keys, shapes and the order of trainable parameters (an optimizer state resumes by
    position) equal those of a checkpoint written before the tap plan existed
    (tests/data/README.md says how the file was made)."""
    layout = json.loads(LAYOUT.read_text())
    student, teacher = small_pair()
    model = VkDDistiller(student, teacher, taps=layout['taps'], probe_size=(128, 128))
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == layout['state_dict']
    assert [[k, list(p.shape)] for k, p in model.named_parameters()
            if p.requires_grad] == layout['optimizer_order']


def test_a_step_reads_in_one_screen_and_no_module_is_long():
    """The distiller's constructor is about 30 lines, its ``loss`` fits a screen (50
    lines), and no file of the package is over 300 lines."""
    def body_lines(fn):
        source = inspect.getsource(fn)
        doc = fn.__doc__ or ''
        return len(source.splitlines()) - (len(doc.splitlines()) if doc else 0)
    assert body_lines(VkDDistiller.__init__) <= 35
    assert body_lines(VkDDistiller.loss) <= 50
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / 'vkd_mmdet').rglob('*.py')
            if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long
