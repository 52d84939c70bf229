"""Adapter files: one task's LoRA tensors as safetensors.

safetensors holds tensors only (no pickle), so an adapter file cannot carry
code. The LoRA settings needed to merge it (rank, alpha, scaling) travel in
the file's string metadata.
"""
import json
from typing import Dict, Tuple

import torch
from safetensors.torch import load_file, save_file

from gslora_det.io_utils import atomic_path


def save_adapter(tensors: Dict[str, torch.Tensor], path: str,
                 metadata: Dict) -> None:
    """Write an adapter atomically; ``metadata`` values are JSON-encoded."""
    with atomic_path(path) as tmp:
        save_file(dict(tensors), tmp,
                  metadata={k: json.dumps(v) for k, v in metadata.items()})


def load_adapter(path: str) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """Read an adapter: (tensors, metadata)."""
    from safetensors import safe_open
    with safe_open(path, framework='pt') as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return load_file(path), meta
