"""Safe checkpoint loading and writing.

torch >= 2.6 unpickles ``torch.load`` files with ``weights_only=True``.
mmengine 0.10.7 does not know this, so ``--resume`` fails on the
``HistoryBuffer`` objects (and numpy scalars/arrays) its ``message_hub``
state holds. The fix is to allow-list exactly those types for the
weights-only unpickler, never to switch weights-only loading off: a
checkpoint that needs any other global to unpickle is refused.
"""
import codecs
import hashlib
import os
from typing import Dict, List, Optional

import numpy as np
import torch

from gslora_det.io_utils import atomic_path


def _numpy_globals() -> List:
    """numpy objects that mmengine checkpoints pickle (scalars in the
    message hub's log buffers, arrays in the runtime info)."""
    core = getattr(np, '_core', None) or np.core
    found = [core.multiarray._reconstruct, core.multiarray.scalar,
             np.ndarray, np.dtype]
    # numpy >= 1.25 pickles dtypes as instances of per-type classes.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes)
                  if n.endswith('DType') and isinstance(
                      getattr(dtypes, n), type)]
    return found


def mmengine_safe_globals() -> List:
    """The exact set of non-torch types an mmengine checkpoint holds."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, codecs.encode] + _numpy_globals()


def _history_buffer_getstate(self) -> dict:
    """``HistoryBuffer.__getstate__`` without the built-in statistics.

    mmengine pickles every buffer's ``statistics_methods`` dict, whose
    default entries (min, max, current, mean) are functions that pickle as
    ``getattr(HistoryBuffer, 'min')``. Allow-listing ``builtins.getattr``
    for the weights-only unpickler would open it to attribute walks over
    any allowed object, so instead the defaults, which ``__setstate__``
    restores by itself, are simply not written. Custom statistics methods
    (rare) are still saved, and such a checkpoint is then refused on load
    with a clear message instead of being unpickled.
    """
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    custom = {k: v for k, v in self._statistics_methods.items()
              if k not in _DEFAULT_STATISTICS}
    if custom:
        state['statistics_methods'] = custom
    return state


_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def patch_history_buffer() -> None:
    """Make new mmengine checkpoints loadable with weights-only loading."""
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_getstate


def register_safe_globals() -> None:
    """Allow-list :func:`mmengine_safe_globals` for ``torch.load``."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(mmengine_safe_globals())


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
            f'unpickler ({type(err).__name__}: {str(err).splitlines()[0]}). '
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


patch_history_buffer()
register_safe_globals()
