"""Loading checkpoints with ``torch.load(weights_only=True)``, safely.

torch >= 2.6 defaults to ``weights_only=True``, and mmengine 0.10.7 calls
``torch.load`` without saying otherwise, so mmengine's own ``load_checkpoint``,
``load_from`` and ``--resume`` reject the checkpoints mmengine writes: their
``message_hub`` and ``meta`` pickle a ``HistoryBuffer`` and numpy arrays, dtypes
and scalars. :func:`allow_mmengine_checkpoints` adds exactly those types to
torch's allow-list; nothing else becomes loadable, so a malicious file still
cannot run code. :func:`load_teacher_checkpoint` reads a teacher's weights the
same way and names the offending types when a file needs more.
"""
import os
import os.path as osp
import pickle
import re
import urllib.parse
import urllib.request
import zipfile
from collections import OrderedDict
from typing import Dict, List

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError
from .export import STUDENT_PREFIX, student_state_dict

__all__ = ['allow_mmengine_checkpoints', 'safe_load', 'load_teacher_checkpoint',
           'CheckpointError']


def _numpy_globals() -> List:
    """numpy's pickling helpers, under both their numpy 2 and numpy 1 names."""
    core = np._core if hasattr(np, '_core') else np.core
    reconstruct, scalar = core.multiarray._reconstruct, core.multiarray.scalar
    items = [reconstruct, scalar, np.ndarray, np.dtype,
             (reconstruct, 'numpy.core.multiarray._reconstruct'),
             (scalar, 'numpy.core.multiarray.scalar')]
    # numpy >= 1.25 pickles dtypes through their classes (numpy.dtypes.Float64DType...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        items += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return items


def _history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr`` while unpickling.

    A pickled ``HistoryBuffer`` refers to its statistics methods as
    ``getattr(HistoryBuffer, 'mean')``. Allowing the real ``getattr`` would let a
    crafted file reach any attribute of any allowed type, so only that one use
    is resolved and everything else is refused.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    statistics = {'min', 'max', 'mean', 'current'} | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in statistics:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}) '
        f'while loading a checkpoint: only HistoryBuffer statistics are allowed')


def mmengine_safe_globals() -> List:
    """Everything mmengine 0.10's own checkpoints pickle besides tensors."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return ([HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')]
            + _numpy_globals())


def _allowed_names() -> set:
    names = set()
    for item in mmengine_safe_globals():
        obj, name = item if isinstance(item, tuple) else (item, None)
        names.add(name or f'{obj.__module__}.{obj.__qualname__}')
    return names


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine's own checkpoints."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(mmengine_safe_globals())


def _offending_globals(path: str) -> List[str]:
    """Every global the file references that torch does not allow by default."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - only used to improve an error message
        return []


# torch.save writes a zip archive (torch >= 1.6) or, with the legacy format, a
# pickle stream, whose first byte is the PROTO opcode followed by the protocol.
_PICKLE_PROTO = 0x80


def check_checkpoint_file(path: str) -> None:
    """Raise :class:`CheckpointError` naming ``path`` unless it looks like
    something ``torch.save`` wrote: a complete zip archive or a pickle stream."""
    size = osp.getsize(path)
    if size == 0:
        raise CheckpointError(
            f'checkpoint {path} is empty (0 bytes): an interrupted download or save. '
            f'Delete it and download or save it again.')
    if zipfile.is_zipfile(path):
        return
    with open(path, 'rb') as f:
        head = f.read(4)
    if len(head) >= 2 and head[0] == _PICKLE_PROTO and 2 <= head[1] <= 5:
        return  # legacy (non-zip) torch.save format
    what = ('a zip archive without its end (truncated: an interrupted download or save?)'
            if head == b'PK\x03\x04' else 'neither a zip archive nor a pickle stream')
    raise CheckpointError(
        f'checkpoint {path} ({size} bytes) is not a valid PyTorch checkpoint: it is '
        f'{what}. Check the path, or download or save it again.')


def safe_load(path: str, trust: bool = False, map_location='cpu',
              how_to_trust: str = 'load it with trust=True'):
    """``torch.load`` with only tensors, plain types and mmengine's own types.

    With ``trust=True`` the file is fully unpickled (it can run arbitrary code).
    ``how_to_trust``: how the caller's user asks for that, for the refusal's message.
    Files that are not checkpoints at all (empty, truncated, another format)
    raise :class:`CheckpointError` with the path, before unpickling.
    """
    check_checkpoint_file(path)
    try:
        if trust:
            try:
                return torch.load(path, map_location=map_location, weights_only=False)
            except pickle.UnpicklingError as exc:
                raise CheckpointError(
                    f'checkpoint {path} is not a valid PyTorch checkpoint (corrupt '
                    f'pickle stream: {_unpickler_error(exc)})') from exc
        # Not the `safe_globals` context manager: on exit it would drop these
        # types from the process-wide list that mmengine's own loads rely on.
        allow_mmengine_checkpoints()
        return torch.load(path, map_location=map_location, weights_only=True)
    except (EOFError, RuntimeError) as exc:  # a stream that ends early, a broken archive
        raise CheckpointError(
            f'checkpoint {path} is not a valid PyTorch checkpoint (truncated or '
            f'corrupt): {type(exc).__name__}: {exc}') from exc
    except pickle.UnpicklingError as exc:
        allowed = _allowed_names()
        names = [n for n in _offending_globals(path) if n not in allowed]
        reason = _unpickler_error(exc)
        if not names and not any(w in reason.lower() for w in ('global', 'refusing')):
            # Not a refused type but a stream torch cannot even parse.
            raise CheckpointError(
                f'checkpoint {path} is not a valid PyTorch checkpoint (corrupt pickle '
                f'stream: {reason})') from exc
        names = names or [line.strip() for line in str(exc).splitlines()
                          if 'refusing' in line or 'Unsupported' in line][:1] or [str(exc)]
        raise CheckpointError(
            f'checkpoint {path} needs types outside the safe allow-list to load: '
            f'{names}. Loading it could run arbitrary code. If you made this file '
            f'yourself and trust it, {how_to_trust} to unpickle it fully.') from exc


def _unpickler_error(exc: BaseException) -> str:
    """The reason in torch's weights-only error, without its boilerplate."""
    text = str(exc)
    found = re.search(r'WeightsUnpickler error:\s*(.*?)\s*(?:\n\s*\nCheck the documentation|$)',
                      text, re.S)
    reason = found.group(1) if found else text
    return ' '.join(reason.split()) or type(exc).__name__


def fetch(url_or_path: str, timeout: float = 15.0) -> str:
    """A local file for ``url_or_path``; URLs go to torch's hub cache once."""
    if urllib.parse.urlparse(url_or_path).scheme not in ('http', 'https'):
        if osp.isdir(url_or_path):
            found = sorted(f for f in os.listdir(url_or_path)
                           if f.endswith(('.pth', '.pt', '.ckpt', '.bin', '.safetensors')))
            inside = (f'it holds the checkpoint files {found[:10]}'
                      f'{" ..." if len(found) > 10 else ""}; give one of them'
                      if found else 'it holds no checkpoint file (*.pth, *.pt, *.ckpt)')
            raise IsADirectoryError(f'checkpoint {url_or_path} is a directory, not a file: '
                                    f'{inside}')
        if not osp.isfile(url_or_path):
            raise FileNotFoundError(f'checkpoint file {url_or_path} does not exist')
        if not os.access(url_or_path, os.R_OK):
            raise PermissionError(f'checkpoint file {url_or_path} is not readable')
        return url_or_path
    cache_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    target = osp.join(cache_dir, osp.basename(urllib.parse.urlparse(url_or_path).path))
    if osp.isfile(target):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f'{target}.part'
    try:
        with urllib.request.urlopen(url_or_path, timeout=timeout) as resp, open(tmp, 'wb') as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
    except Exception as exc:  # noqa: BLE001 - re-raised with the fix
        if osp.exists(tmp):
            os.remove(tmp)
        raise ConnectionError(
            f'cannot download checkpoint {url_or_path}: {exc}. Download it on a '
            f'machine with network access and set teacher_ckpt to the local path '
            f'(or place it at {target}).') from exc
    os.replace(tmp, target)
    return target


def without_ddp_prefix(state: Dict) -> 'OrderedDict[str, torch.Tensor]':
    """``state`` with the ``module.`` prefix that DDP-wrapped models save removed."""
    return OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in state.items())


def extract_state_dict(ckpt) -> 'OrderedDict[str, torch.Tensor]':
    """Weights of a checkpoint: its ``state_dict`` (or the dict itself), with
    ``module.`` (DDP) prefixes removed; a VkD checkpoint yields its student."""
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not any(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError('the checkpoint holds no state dict of tensors')
    state = without_ddp_prefix(state)
    if any(k.startswith(STUDENT_PREFIX) for k in state):
        state = student_state_dict(state)
    return state


def load_teacher_checkpoint(model: nn.Module, url_or_path: str, trust: bool = False,
                            how_to_trust: str = 'load it with trust=True') -> Dict:
    """Load a teacher's weights strictly; fail with counts and examples on mismatch,
    and with the tensors' names when any holds NaN or Inf. Returns the checkpoint's
    ``meta`` (``{}`` if it has none): mmengine keeps the training set's classes in
    ``meta['dataset_meta']``."""
    path = fetch(url_or_path)
    ckpt = safe_load(path, trust=trust, how_to_trust=how_to_trust)
    state = extract_state_dict(ckpt)
    check_state_dict_fits(model.state_dict(), state,
                          f'teacher checkpoint {url_or_path} does not match the teacher config',
                          'Check that `teacher` is the config this checkpoint was trained with.')
    check_finite(state, f'teacher checkpoint {url_or_path}')
    model.load_state_dict(state, strict=True)
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def nonfinite_tensors(state: Dict) -> List[str]:
    """Names of the floating-point tensors of ``state`` that hold NaN or Inf."""
    return [name for name, value in state.items()
            if torch.is_tensor(value) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())]


def check_finite(state: Dict, what: str) -> None:
    """Raise :class:`CheckpointError` naming the first tensors with NaN/Inf."""
    bad = nonfinite_tensors(state)
    if bad:
        counts = ', '.join(
            f"'{name}' ({int((~torch.isfinite(state[name])).sum())} of "
            f'{state[name].numel()} values)' for name in bad[:5])
        raise CheckpointError(
            f'{what}: {len(bad)} tensor(s) hold NaN or Inf, first {counts}. The run that '
            f'saved it diverged, or the file is corrupted: a teacher with such weights '
            f'gives NaN features. Use an earlier checkpoint of that run, or retrain it.')


def check_state_dict_fits(own: Dict, state: Dict, what: str, advice: str) -> None:
    """Raise :class:`CheckpointError` (``'<what>: <differences>. <advice>'``)
    unless ``state`` fits ``own`` key for key and shape for shape."""
    differences = state_dict_differences(own, state)
    if differences:
        prefix = prefix_hint(own, state)
        raise CheckpointError(f'{what}: {differences}. {prefix or advice}')


def prefix_hint(own: Dict, state: Dict) -> str:
    """'' unless every key of ``own`` is in ``state`` under one prefix (MMRazor saves
    its student as ``architecture.*``, a distillation run as ``student.*``): then
    which prefix, and how to strip it."""
    for prefix in sorted({k.split('.', 1)[0] + '.' for k in state if '.' in k}):
        stripped = {k[len(prefix):] for k in state if k.startswith(prefix)}
        if own and set(own) <= stripped:
            return (f"Every key this model needs is in the checkpoint under the prefix "
                    f"'{prefix}' (MMRazor saves its student as 'architecture.*'), which "
                    f"the config's model lacks. Strip it into a checkpoint of its own: "
                    f"state = torch.load(path)['state_dict']; torch.save({{'state_dict': "
                    f"{{k[{len(prefix)}:]: v for k, v in state.items() if "
                    f"k.startswith('{prefix}')}}}}, 'stripped.pth')")
    return ''


def state_dict_differences(own: Dict, state: Dict) -> str:
    """'' when ``state`` fits ``own`` key for key and shape for shape; otherwise
    the counts of missing and unexpected keys and shape mismatches, with examples."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                   for k in own if k in state and state[k].shape != own[k].shape]
    if not (missing or unexpected or wrong_shape):
        return ''
    return (f'{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} '
            f'unexpected keys (e.g. {unexpected[:3]}), {len(wrong_shape)} shape '
            f'mismatches (e.g. {wrong_shape[:3]})')
