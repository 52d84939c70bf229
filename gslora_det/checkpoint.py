"""Safe checkpoint loading and writing.

torch >= 2.6 unpickles ``torch.load`` files with ``weights_only=True``.
mmengine 0.10.7 does not know this, so ``load_from`` / ``--resume`` fail on
what its checkpoints hold besides tensors: the ``HistoryBuffer`` objects and
numpy scalars/arrays of the ``message_hub`` state, and each buffer's
statistics methods, which pickle as ``getattr(HistoryBuffer, 'min')`` (also
max/current/mean). The fix is to allow-list exactly those for the
weights-only unpickler, never to switch weights-only loading off: a
checkpoint that needs any other global to unpickle is refused.

``builtins.getattr`` is not allowed as such: the allow-list maps it to
:func:`history_buffer_getattr`, which answers only those four lookups. That
keeps checkpoints of stock mmdet/mmengine runs (written in processes that
never imported gslora_det) loadable without patching mmengine.
"""
import codecs
import hashlib
import os
import pickle
import re
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from gslora_det.io_utils import atomic_path

#: HistoryBuffer's built-in statistics methods (``_set_default_statistics``).
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _numpy_globals() -> List:
    """numpy objects that mmengine checkpoints pickle (scalars in the
    message hub's log buffers, arrays in the runtime info)."""
    core = getattr(np, '_core', None) or np.core
    found = [np.ndarray, np.dtype]
    # numpy 1.x pickles these two as numpy.core.multiarray.*, numpy 2.x as
    # numpy._core.multiarray.*: accept checkpoints written with either.
    for name in ('_reconstruct', 'scalar'):
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            found.append((getattr(core.multiarray, name), f'{module}.{name}'))
    # numpy >= 1.25 pickles dtypes as instances of per-type classes.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes)
                  if n.endswith('DType') and isinstance(
                      getattr(dtypes, n), type)]
    return found


def history_buffer_getattr(obj, name):
    """What ``builtins.getattr`` resolves to in weights-only unpickling.

    Protocol-2 pickles store a method as ``getattr(owner, name)``, and
    mmengine pickles each log buffer's statistics methods that way. Only
    ``getattr(HistoryBuffer, name)`` for the built-in statistics is answered:
    a general getattr would let a file walk the attributes of every allowed
    object, and ``HistoryBuffer.__setstate__`` installs the unpickled
    callables in the class-wide statistics registry, which mmengine later
    calls.

    Args:
        obj: The object the pickle looks the attribute up on.
        name: The attribute name.

    Returns:
        Callable: ``getattr(HistoryBuffer, name)``.

    Raises:
        pickle.UnpicklingError: Any other lookup.
    """
    if obj is HistoryBuffer and type(name) is str \
            and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    what = obj.__qualname__ if isinstance(obj, type) else type(obj).__name__
    raise pickle.UnpicklingError(
        f'refused getattr({what}, {str(name)[:40]!r}): the weights-only '
        "allow-list answers only getattr(HistoryBuffer, 'min' | 'max' | "
        "'current' | 'mean'), the log statistics mmengine pickles")


def mmengine_safe_globals() -> List:
    """The exact set of non-torch globals an mmengine checkpoint holds
    (tuples map a pickled name to what it resolves to)."""
    return [HistoryBuffer, codecs.encode,
            (history_buffer_getattr, 'builtins.getattr')] + _numpy_globals()


def register_safe_globals() -> None:
    """Allow-list :func:`mmengine_safe_globals` for ``torch.load``."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(mmengine_safe_globals())


def _refusal_reason(err: Exception) -> str:
    """The unpickler's own reason (torch wraps it in generic advice, part
    of which is to switch weights-only off, which is not the fix here)."""
    text = str(err)
    found = re.search(r'GLOBAL (\S+) was not an allowed global', text)
    if found:
        return (f'it needs the global {found.group(1)}, which is not on the '
                'allow-list')
    found = re.search(r'WeightsUnpickler error:\s*(.+)', text) or re.search(
        r'(refused getattr.+|Unsupported .+|Trying to .+)', text)
    line = found.group(1) if found else (text.splitlines() or [''])[0]
    return f'{type(err).__name__}: {line.strip()}'


def load_checkpoint_safely(path: str, map_location='cpu') -> Dict:
    """Load a checkpoint with weights-only unpickling.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: The file needs arbitrary code to unpickle (it is not a
            plain weights file); the message says so and nothing is run.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError or RuntimeError
        raise RuntimeError(
            f'refused to load {path}: it cannot be read by the weights-only '
            f'unpickler ({_refusal_reason(err)}). '
            'A checkpoint that needs arbitrary code to load is never '
            'executed; re-save it as a plain state dict from a trusted '
            'environment.') from err


def state_dict_of(checkpoint: Dict) -> Dict[str, torch.Tensor]:
    """The model weights of an mmengine checkpoint or a bare state dict."""
    return checkpoint.get('state_dict', checkpoint)


def save_checkpoint_atomic(obj: Dict, path: str) -> None:
    """``torch.save`` to a temporary file, then rename onto ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def find_resumable(work_dir: str) -> Optional[str]:
    """The newest checkpoint in ``work_dir`` that loads, or None.

    mmengine's ``CheckpointHook`` writes ``iter_N.pth`` in place, deletes
    older checkpoints, and only then updates the ``last_checkpoint``
    pointer, so a run killed at the wrong moment leaves a truncated file or
    a pointer to a deleted one. This looks past both: the pointer's target
    if it loads, else the newest ``iter_*.pth`` / ``epoch_*.pth`` that does.
    """
    import glob
    import re
    candidates = []
    pointer = os.path.join(work_dir, 'last_checkpoint')
    if os.path.isfile(pointer):
        with open(pointer) as f:
            candidates.append(f.read().strip())

    def step(path):
        found = re.search(r'_(\d+)\.pth$', path)
        return int(found.group(1)) if found else -1

    candidates += sorted(
        glob.glob(os.path.join(work_dir, 'iter_*.pth')) +
        glob.glob(os.path.join(work_dir, 'epoch_*.pth')),
        key=step, reverse=True)
    for path in candidates:
        if not os.path.isfile(path):
            continue
        try:
            torch.load(path, map_location='cpu', weights_only=True)
        except Exception:  # truncated or foreign: not resumable
            continue
        return path
    return None


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


register_safe_globals()
