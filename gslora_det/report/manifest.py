"""The audit manifest of a forgetting task (``task_<k>/manifest.json``).

It records what is needed to check, later and elsewhere, that a merged
checkpoint is what the task produced and that it forgets what it claims:
SHA-256 of the input checkpoint, the adapter and the merged checkpoint, the
config as run, the class lists, package versions, seed, start and end time
(UTC) and the metrics before and after. ``tools/verify.py`` checks a merged
checkpoint against it.

File paths of the adapter and the merged checkpoint are stored relative to
the manifest (they lie next to it); the input checkpoint is stored as the
config named it and as an absolute path.
"""
import datetime
import json
import numbers
import os.path as osp
import platform
from typing import Dict, Mapping, Optional

from gslora_det.checkpoint import sha256_file
from gslora_det.io_utils import atomic_write_text

MANIFEST_NAME = 'manifest.json'
FORMAT = 'gslora_det-manifest/1'
FILE_KEYS = ('input_checkpoint', 'adapter', 'merged_checkpoint')
REQUIRED_KEYS = ('format', 'task', 'files', 'classes', 'config', 'versions',
                 'seed', 'started_at', 'finished_at', 'metrics')
_PACKAGES = ('torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet',
             'gslora_det')


def utc_now() -> str:
    """The current time, ISO 8601 in UTC (``2025-01-31T12:00:00+00:00``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec='seconds')


def utc_from_timestamp(seconds: float) -> str:
    """A POSIX time stamp as ISO 8601 in UTC."""
    return datetime.datetime.fromtimestamp(
        seconds, datetime.timezone.utc).isoformat(timespec='seconds')


def package_versions() -> Dict[str, Optional[str]]:
    """Versions of python and of the packages a result depends on (None for
    a package that is not installed)."""
    import importlib
    out: Dict[str, Optional[str]] = {'python': platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except (ImportError, AttributeError):
            out[name] = None
    return out


def json_safe(value):
    """A JSON-encodable copy of a config value: tuples become lists,
    numpy/torch scalars numbers, anything else unknown its ``repr``."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, numbers.Number):
        return value.item() if hasattr(value, 'item') else float(value)
    return repr(value)


def file_entry(path: str, stored_path: str) -> Dict:
    """``{path, sha256, bytes}`` of a file; ``stored_path`` is the path to
    record (e.g. relative to the manifest)."""
    return dict(path=stored_path, sha256=sha256_file(path),
                bytes=osp.getsize(path))


def build_manifest(task: int, work_dir: str,
                   input_checkpoint: Optional[str],
                   adapter_name: str, merged_name: str,
                   classes: Mapping, config: Mapping,
                   config_text: Optional[str], settings: Mapping,
                   seed, randomness, started_at: Optional[str],
                   finished_at: str, metrics_before: Mapping,
                   metrics_after: Mapping,
                   input_sha256: Optional[str] = None,
                   input_abs_path: Optional[str] = None) -> Dict:
    """Assemble a manifest; hashes the three files.

    Args:
        task (int): Task index.
        work_dir (str): The task's work dir (holds adapter and merged
            checkpoint, and the manifest).
        input_checkpoint (str, optional): The checkpoint the task started
            from.
        adapter_name (str): Adapter file name in ``work_dir``.
        merged_name (str): Merged checkpoint file name in ``work_dir``.
        classes (Mapping): ``forget``, ``retain`` and ``old`` class lists.
        config (Mapping): The config as run (a dict).
        config_text (str, optional): The config as run, as Python text.
        settings (Mapping): The method's effective settings (the model's
            ``lora_cfg``, ``forget_cfg``, ``group_lasso_cfg``,
            ``prototype_cfg``, the replay settings, ...).
        seed: The runner's seed.
        randomness: The config's ``randomness``.
        started_at (str, optional): Start of the task, ISO 8601 UTC.
        finished_at (str): End of the task, ISO 8601 UTC.
        metrics_before (Mapping): Metrics of the input model.
        metrics_after (Mapping): Metrics after the task.
        input_sha256 (str, optional): SHA-256 of the input checkpoint taken
            when the task started; computed now when not given.
        input_abs_path (str, optional): Absolute path of the input
            checkpoint when the task started. Defaults to
            ``abspath(input_checkpoint)`` now.

    Returns:
        dict: The manifest.
    """
    files = dict(
        adapter=file_entry(osp.join(work_dir, adapter_name), adapter_name),
        merged_checkpoint=file_entry(osp.join(work_dir, merged_name),
                                     merged_name))
    inp = dict(path=input_checkpoint, abs_path=input_abs_path,
               sha256=input_sha256, bytes=None)
    if input_checkpoint:  # None: the task started from no checkpoint
        inp['abs_path'] = input_abs_path or osp.abspath(input_checkpoint)
        src = input_checkpoint if osp.isfile(input_checkpoint) \
            else inp['abs_path']
        inp['sha256'] = input_sha256 or sha256_file(src)
        inp['bytes'] = osp.getsize(src)
    files = dict(input_checkpoint=inp, **files)

    def numbers_only(metrics):
        return {k: v for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    return dict(
        format=FORMAT,
        task=task,
        files=files,
        classes=dict(forget=list(classes.get('forget', [])),
                     retained=list(classes.get('retain', [])),
                     previously_forgotten=list(classes.get('old', []))),
        settings=json_safe(settings),
        config=json_safe(config),
        config_text=config_text,
        versions=package_versions(),
        seed=json_safe(seed),
        randomness=json_safe(randomness),
        started_at=started_at,
        finished_at=finished_at,
        metrics=dict(before=numbers_only(metrics_before),
                     after=numbers_only(metrics_after)),
    )


def write_manifest(manifest: Mapping, path: str) -> None:
    """Write a manifest atomically as indented JSON."""
    atomic_write_text(path, json.dumps(manifest, indent=1) + '\n')


def read_manifest(path: str) -> Dict:
    """Read and check a manifest.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a gslora_det manifest, or a required key missing.
    """
    with open(path) as f:
        manifest = json.load(f)
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise ValueError(f'{path} is not a gslora_det manifest (format '
                         f'{FORMAT!r})')
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    missing += [f'files.{k}' for k in FILE_KEYS
                if k not in manifest['files']]
    if missing:
        raise ValueError(f'{path} lacks {missing}')
    return manifest


def manifest_file(manifest: Mapping, key: str, manifest_path: str) -> str:
    """Where a file the manifest names is now: a relative path is taken
    relative to the manifest's folder; the input checkpoint is looked up
    as stored, then at its absolute path, then next to the manifest."""
    entry = manifest['files'][key]
    folder = osp.dirname(osp.abspath(manifest_path))
    candidates = [entry['path']] if osp.isabs(entry['path']) else []
    if key == 'input_checkpoint':
        candidates += [entry['path'], entry.get('abs_path') or entry['path']]
    candidates.append(osp.join(folder, entry['path']))
    for path in candidates:
        if osp.isfile(path):
            return path
    return candidates[-1]
