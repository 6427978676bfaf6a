"""Capture intermediate outputs of named submodules with forward hooks.

A tap names a module path. Most modules run once per forward pass (a backbone, a
neck): their output is recorded as it is. A dense head's tower runs once per FPN
level, either one module shared by all levels (RetinaNet, FCOS, ATSS, GFL) or one
module per level (RTMDet): every call is recorded, in call order, and each call is
one level of the tap (:class:`CallSequence`).
"""
import difflib
from contextlib import contextmanager
from typing import Dict, Iterable, List

import torch.nn as nn

from ..errors import TapError


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once every wanted output is captured."""


class CallSequence(list):
    """The outputs of a tapped module that ran more than once in one forward pass
    (e.g. a head tower shared by all FPN levels), in call order: one level each."""


def output_modules(path: str, module: nn.Module) -> List[str]:
    """The modules whose outputs a tap on ``path`` records.

    A ``nn.ModuleList`` is never called itself: a list of layers applied in turn
    (a head tower such as ``bbox_head.cls_convs``) gives its last layer's output;
    a list of such lists, one per level (RTMDet's ``cls_convs``), gives each
    list's last layer. Any other module is recorded itself.
    """
    if not isinstance(module, nn.ModuleList):
        return [path]
    children = list(module.named_children())
    if not children:
        raise TapError(f"VkD tap: '{path}' is an empty ModuleList; there is no output "
                       f"to record")
    if all(isinstance(child, nn.ModuleList) for _, child in children):
        return [name for child_name, child in children
                for name in output_modules(f'{path}.{child_name}', child)]
    last_name, last = children[-1]
    return output_modules(f'{path}.{last_name}', last)


class FeatureRecorder:
    """Records the outputs of ``paths`` (dotted submodule names) of ``model``.

    Hooks are registered once and record only inside :meth:`record`, so the
    model's other forward passes (validation, export) are untouched. With
    ``stop_early=True`` the forward pass is cut off as soon as every tap has
    recorded as many calls as it made in the last full pass (the distiller's
    probe), so e.g. a teacher runs only as far as its deepest tap.
    """

    def __init__(self, model: nn.Module, paths: Iterable[str], role: str = 'model'):
        self.paths: List[str] = list(dict.fromkeys(paths))
        self.role = role
        modules = dict(model.named_modules())
        for path in self.paths:
            if path not in modules:
                raise TapError(unknown_module_message(path, modules, role))
        # tap path -> the modules recorded for it (see output_modules)
        self.sources: Dict[str, List[str]] = {
            path: output_modules(path, modules[path]) for path in self.paths}
        # calls per tap in the last full pass; a stopped-early pass waits for as many
        self.calls: Dict[str, int] = {}
        self.outputs: Dict[str, object] = {}
        self._calls: Dict[str, list] = {}
        self._active = False
        self._stop_early = False
        self._handles = [modules[source].register_forward_hook(self._hook(path))
                         for path, sources in self.sources.items() for source in sources]

    def _hook(self, path: str):
        def hook(module, args, output):
            if not self._active:
                return
            self._calls.setdefault(path, []).append(output)
            if self._stop_early and all(
                    len(self._calls.get(p, ())) >= self.calls.get(p, 1) for p in self.paths):
                raise _StopForward

        return hook

    @contextmanager
    def record(self, stop_early: bool = False):
        """Record during the ``with`` body; yields the ``{path: output}`` dict, where
        a module that ran more than once gives a :class:`CallSequence`."""
        self.outputs = {}
        self._calls = {}
        self._active, self._stop_early = True, stop_early
        try:
            yield self.outputs
        except _StopForward:
            pass
        finally:
            self._active = self._stop_early = False
            for path, calls in self._calls.items():
                self.outputs[path] = calls[0] if len(calls) == 1 else CallSequence(calls)
            if not stop_early:
                self.calls = {path: len(calls) for path, calls in self._calls.items()}

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []


def unknown_module_message(path: str, modules: Dict[str, nn.Module], role: str) -> str:
    """Name the unknown module, the closest names and the top-level ones."""
    names = [n for n in modules if n]
    close = difflib.get_close_matches(path, names, n=5, cutoff=0.5)
    parent = path.rsplit('.', 1)[0] if '.' in path else ''
    siblings = [n for n in names if n.rsplit('.', 1)[0] == parent and n.count('.') == path.count('.')]
    top = [n for n in names if '.' not in n]
    msg = (f"VkD tap: the {role} has no module '{path}'. "
           f"Top-level modules: {top}.")
    if siblings:
        msg += f" Modules under '{parent or '<root>'}': {siblings[:30]}."
    if close:
        msg += f' Closest names: {close}.'
    return msg + ' Use `backbone`, `neck` or any dotted path from model.named_modules().'
