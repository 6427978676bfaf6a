"""Capture intermediate outputs of named submodules with forward hooks."""
import difflib
from contextlib import contextmanager
from typing import Dict, Iterable, List

import torch.nn as nn


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once every wanted output is captured."""


class RepeatedCall:
    """Marks a module that ran more than once in one forward pass."""

    def __init__(self, count: int):
        self.count = count


class FeatureRecorder:
    """Records the outputs of ``paths`` (dotted submodule names) of ``model``.

    Hooks are registered once and record only inside :meth:`record`, so the
    model's other forward passes (validation, export) are untouched. With
    ``stop_early=True`` the forward pass is cut off as soon as the last wanted
    module has run, so e.g. a teacher runs only as far as its deepest tap.
    """

    def __init__(self, model: nn.Module, paths: Iterable[str], role: str = 'model'):
        self.paths: List[str] = list(dict.fromkeys(paths))
        modules = dict(model.named_modules())
        for path in self.paths:
            if path not in modules:
                raise KeyError(unknown_module_message(path, modules, role))
        self.outputs: Dict[str, object] = {}
        self._active = False
        self._stop_early = False
        self._handles = [modules[p].register_forward_hook(self._hook(p)) for p in self.paths]

    def _hook(self, path: str):
        def hook(module, args, output):
            if not self._active:
                return
            if path in self.outputs:  # e.g. a head layer shared by all FPN levels
                prev = self.outputs[path]
                self.outputs[path] = RepeatedCall(prev.count + 1 if isinstance(prev, RepeatedCall) else 2)
                return
            self.outputs[path] = output
            if self._stop_early and len(self.outputs) == len(self.paths):
                raise _StopForward

        return hook

    @contextmanager
    def record(self, stop_early: bool = False):
        """Record during the ``with`` body; yields the ``{path: output}`` dict."""
        self.outputs = {}
        self._active, self._stop_early = True, stop_early
        try:
            yield self.outputs
        except _StopForward:
            pass
        finally:
            self._active = self._stop_early = False

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
