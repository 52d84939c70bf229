"""Adapters: one task's LoRA as a folder that travels (PEFT's layout)::

    adapter/
        adapter_config.json        AdapterConfig: how to merge it, and where
        adapter_model.safetensors  the LoRA tensors only: <layer>.lora_A
                                   (r, in) and <layer>.lora_B (out, r), of
                                   the groups whose update is not zero

A group whose update is exactly zero (:mod:`gslora_det.zero_groups`) has
no tensors in the file; the config lists it in ``zero_groups`` and
:func:`read_adapter` gives it zeros back. An adapter of an older writer
(every layer stored, no such keys) reads as before.

safetensors holds tensors only (no pickle), so an adapter cannot carry
code. The weights file also keeps the merge settings (rank, alpha, scaling,
task, forget classes, group pattern) in its string metadata, as the older
single-file ``adapter.safetensors`` did: that file is still written next to
the folder as a byte copy (the manifest hashes it, and older readers open
it) and :func:`read_adapter` still reads it.
"""
import json
import os.path as osp
import shutil
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, List, Optional, Tuple

import torch
from safetensors.torch import load_file, save_file

from gslora_det.checkpoint import sha256_file
from gslora_det.io_utils import atomic_path, atomic_write_text
from gslora_det.zero_groups import (ZERO_GROUPS_NOTE, drop_groups,
                                    layer_group, split_groups,
                                    stored_layers, zero_filled)

FORMAT_VERSION = 'gslora_det-adapter/1'
ADAPTER_DIR = 'adapter'
CONFIG_NAME = 'adapter_config.json'
WEIGHTS_NAME = 'adapter_model.safetensors'
LEGACY_NAME = 'adapter.safetensors'
#: Metadata keys of the weights file (those of the single-file format).
_META_KEYS = ('task', 'rank', 'alpha', 'scaling', 'forget_classes',
              'group_pattern', 'base_checkpoint_sha256', 'format_version',
              'layers', 'stored_groups', 'zero_groups')


class AdapterError(ValueError):
    """An adapter that is malformed or does not fit a checkpoint."""


def save_adapter(tensors: Dict[str, torch.Tensor], path: str,
                 metadata: Dict) -> None:
    """Write an adapter atomically; ``metadata`` values are JSON-encoded."""
    with atomic_path(path) as tmp:
        save_file(dict(tensors), tmp,
                  metadata={k: json.dumps(v) for k, v in metadata.items()})


def load_adapter(path: str) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """Read an adapter weights file: (tensors, metadata)."""
    from safetensors import safe_open

    def decode(text):
        try:
            return json.loads(text)
        except ValueError:  # a plain string (e.g. PEFT's "format": "pt")
            return text

    with safe_open(path, framework='pt') as f:
        meta = {k: decode(v) for k, v in (f.metadata() or {}).items()}
    return load_file(path), meta


@dataclass
class AdapterConfig:
    """``adapter_config.json``: what merging needs, and what it fits.

    Args:
        rank (int): LoRA rank r.
        alpha (float): ``lora_alpha``.
        scaling (float): The update's factor (alpha / r).
        targets (list[str]): Full-match regexes of the adapted Linears.
        group_pattern (str, optional): Regex whose first capture names a
            layer's group-lasso group.
        group_names (list[str]): The groups, in model order.
        layers (dict[str, list[int]]): Adapted layer -> weight shape
            ``[out, in]`` (the architecture a base must have), stored
            or not.
        stored_groups (list[str], optional): The groups whose tensors the
            weights file holds; None (an older writer): every layer's.
        zero_groups (list[str]): The groups whose update is exactly zero,
            not in the weights file (read back as zeros).
        zero_groups_note (str, optional): What the two lists mean.
        task_index (int, optional): 1-based forgetting task.
        forget_classes, retained_classes, previously_forgotten (list[str]):
            The task's classes.
        base_checkpoint_sha256 (str, optional): SHA-256 of the task's input
            checkpoint (what merging expects).
        merged_checkpoint_sha256 (str, optional): SHA-256 of the task's
            merged checkpoint (what unmerging expects).
        method (str): Training method ('gslora' or a baseline).
        detector_type (str, optional): The model class that trained it.
        base_detector_type (str, optional): Its mmdet class (the merged
            checkpoint's architecture).
        gslora_det_version (str, optional): Package version that wrote it.
        format_version (str): Format of this folder.
    """
    rank: int
    alpha: float
    scaling: Optional[float]
    targets: List[str] = field(default_factory=list)
    group_pattern: Optional[str] = None
    group_names: List[str] = field(default_factory=list)
    layers: Dict[str, List[int]] = field(default_factory=dict)
    stored_groups: Optional[List[str]] = None
    zero_groups: List[str] = field(default_factory=list)
    zero_groups_note: Optional[str] = None
    task_index: Optional[int] = None
    forget_classes: List[str] = field(default_factory=list)
    retained_classes: List[str] = field(default_factory=list)
    previously_forgotten: List[str] = field(default_factory=list)
    base_checkpoint_sha256: Optional[str] = None
    merged_checkpoint_sha256: Optional[str] = None
    method: str = 'gslora'
    detector_type: Optional[str] = None
    base_detector_type: Optional[str] = None
    gslora_det_version: Optional[str] = None
    format_version: str = FORMAT_VERSION

    @classmethod
    def from_dict(cls, data: Dict) -> 'AdapterConfig':
        """Build from a JSON dict; keys of a newer writer are dropped."""
        version = str(data.get('format_version', FORMAT_VERSION))
        if version.rsplit('/', 1)[0] != FORMAT_VERSION.rsplit('/', 1)[0]:
            raise AdapterError(f'not a gslora_det adapter config (format '
                               f'{version!r}, expected {FORMAT_VERSION!r})')
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_metadata(cls, meta: Dict,
                      tensors: Dict[str, torch.Tensor]) -> 'AdapterConfig':
        """The config of a single-file adapter (its string metadata)."""
        return cls(rank=meta.get('rank'), alpha=meta.get('alpha'),
                   scaling=meta.get('scaling'),
                   group_pattern=meta.get('group_pattern'),
                   layers=meta.get('layers') or adapter_layers(tensors),
                   stored_groups=meta.get('stored_groups'),
                   zero_groups=list(meta.get('zero_groups') or []),
                   task_index=meta.get('task'),
                   forget_classes=list(meta.get('forget_classes') or []),
                   base_checkpoint_sha256=meta.get('base_checkpoint_sha256'))

    def to_dict(self) -> Dict:
        return asdict(self)

    def metadata(self) -> Dict:
        """The weights file's metadata (the single-file format's keys)."""
        values = dict(self.to_dict(), task=self.task_index)
        return {k: values[k] for k in _META_KEYS}


def adapter_layers(tensors: Dict[str, torch.Tensor]) -> Dict[str, List[int]]:
    """Adapted layer -> its weight shape ``[out, in]`` (from B and A)."""
    layers = OrderedDict()
    for key in sorted(tensors):
        if key.endswith('.lora_A'):
            layer = key[:-len('.lora_A')]
            if f'{layer}.lora_B' not in tensors:
                raise AdapterError(f'adapter has {key} but no '
                                   f'{layer}.lora_B')
            layers[layer] = [int(tensors[f'{layer}.lora_B'].shape[0]),
                             int(tensors[key].shape[1])]
    orphans = [k for k in tensors if k.endswith('.lora_B')
               and k[:-len('.lora_B')] not in layers]
    if orphans:
        raise AdapterError(f'adapter has {orphans[:3]} without lora_A')
    return layers


def check_adapter(tensors: Dict[str, torch.Tensor],
                  config: AdapterConfig) -> None:
    """The tensors are A/B pairs of the config's rank and layers: every
    layer's but those of its ``zero_groups``.

    Raises:
        AdapterError: naming the first disagreement (for a missing tensor:
            the tensor and its group).
    """
    expected = stored_layers(config.layers, config.zero_groups,
                             config.group_pattern)
    for layer in expected:
        for key in (f'{layer}.lora_A', f'{layer}.lora_B'):
            if key not in tensors:
                raise AdapterError(
                    f'adapter weights lack {key}: its group '
                    f'{layer_group(layer, config.group_pattern)!r} is '
                    f'stored, not one of the zero groups '
                    f'{config.zero_groups} ({CONFIG_NAME})')
    layers = adapter_layers(tensors)
    if config.layers and layers != expected:
        extra = sorted(set(layers) - set(expected))
        raise AdapterError(f'adapter weights hold {extra[:3]}, which its '
                           f'config does not list as stored' if extra else
                           f'adapter weights cover {sorted(layers)[:4]}..., '
                           f'its config {sorted(expected)[:4]}...')
    for key, value in tensors.items():
        r = value.shape[0] if key.endswith('.lora_A') else value.shape[-1]
        if config.rank is not None and r != config.rank:
            raise AdapterError(f'{key} has rank {r}, the config '
                               f'{config.rank}')


def save_adapter_folder(folder: str, tensors: Dict[str, torch.Tensor],
                        config: AdapterConfig) -> None:
    """Write ``folder/{adapter_model.safetensors, adapter_config.json}``
    (each atomically; the config last, so a config means complete)."""
    check_adapter(tensors, config)
    save_adapter(tensors, osp.join(folder, WEIGHTS_NAME), config.metadata())
    atomic_write_text(osp.join(folder, CONFIG_NAME),
                      json.dumps(config.to_dict(), indent=2) + '\n')


def read_adapter(path: str) -> Tuple[Dict[str, torch.Tensor],
                                     AdapterConfig]:
    """Read an adapter folder, or a single-file adapter (older format).

    Returns:
        tuple: ``(tensors, AdapterConfig)``; ``tensors`` hold every layer
        of ``config.layers``, zeros for those of its zero groups.

    Raises:
        FileNotFoundError: ``path`` is neither.
        AdapterError: the weights do not match the config.
    """
    if osp.isdir(path):
        config_path = osp.join(path, CONFIG_NAME)
        if not osp.isfile(config_path):
            raise FileNotFoundError(f'{path} holds no {CONFIG_NAME}: not an '
                                    'adapter folder')
        with open(config_path) as f:
            config = AdapterConfig.from_dict(json.load(f))
        tensors, _ = load_adapter(osp.join(path, WEIGHTS_NAME))
    elif osp.isfile(path):
        tensors, meta = load_adapter(path)
        config = AdapterConfig.from_metadata(meta, tensors)
    else:
        raise FileNotFoundError(f'adapter not found: {path}')
    check_adapter(tensors, config)
    return zero_filled(tensors, config.layers, config.rank), config


def weights_file(path: str) -> str:
    """The safetensors file of an adapter folder (or the file itself)."""
    return osp.join(path, WEIGHTS_NAME) if osp.isdir(path) else path


def _mmdet_class(model) -> Optional[str]:
    """The stock mmdet class a GS-LoRA detector extends."""
    return next((c.__name__ for c in type(model).__mro__
                 if c.__module__.startswith('mmdet.')), None)


def save_task_adapter(work_dir: str, tensors: Dict[str, torch.Tensor],
                      model, classes: Dict, task_index: int,
                      base_sha256: Optional[str],
                      merged_path: Optional[str] = None,
                      legacy_name: Optional[str] = LEGACY_NAME) -> str:
    """Write a finished task's adapter folder (and the single-file copy),
    without the tensors of the groups whose update is exactly zero.

    Args:
        work_dir (str): The task's work dir; the folder is ``adapter/``.
        tensors (dict): The LoRA tensors (``lora_state_dict``).
        model: The trained GS-LoRA detector (``lora_cfg``, ``method``).
        classes (dict): ``forget``, ``retain``, ``old`` class lists.
        task_index (int): The task's index.
        base_sha256 (str, optional): SHA-256 of the task's input checkpoint.
        merged_path (str, optional): The merged checkpoint, if written.
        legacy_name (str, optional): Single-file copy in ``work_dir``;
            None writes none.

    Returns:
        str: The adapter folder.
    """
    import gslora_det  # at call time: gslora_det imports this module
    lora = model.lora_cfg
    group_names = list(getattr(model, 'group_names', None) or [])
    stored, zero = split_groups(tensors, lora['group_pattern'], group_names)
    config = AdapterConfig(
        rank=lora['rank'], alpha=lora['alpha'],
        scaling=lora['alpha'] / lora['rank'], targets=list(lora['targets']),
        group_pattern=lora['group_pattern'], group_names=group_names,
        layers=adapter_layers(tensors), stored_groups=stored,
        zero_groups=zero, zero_groups_note=ZERO_GROUPS_NOTE,
        task_index=task_index,
        forget_classes=list(classes.get('forget', [])),
        retained_classes=list(classes.get('retain', [])),
        previously_forgotten=list(classes.get('old', [])),
        base_checkpoint_sha256=base_sha256,
        merged_checkpoint_sha256=sha256_file(merged_path) if (
            merged_path and osp.isfile(merged_path)) else None,
        method=getattr(model, 'method', 'gslora'),
        detector_type=type(model).__name__,
        base_detector_type=_mmdet_class(model),
        gslora_det_version=getattr(gslora_det, '__version__', None))
    folder = osp.join(work_dir, ADAPTER_DIR)
    save_adapter_folder(folder, drop_groups(tensors, zero,
                                            lora['group_pattern']), config)
    if legacy_name:  # same bytes: the manifest's hash holds for both
        with atomic_path(osp.join(work_dir, legacy_name)) as tmp:
            shutil.copyfile(osp.join(folder, WEIGHTS_NAME), tmp)
    return folder
