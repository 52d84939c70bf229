"""Checks and fill-ins applied to a config before the Runner is built.

Everything that can be known to be wrong from the config alone (a missing
annotation file, a class name the dataset does not have, a forget list that
repeats a class, a checkpoint with another class count) is reported here
with a message that names the problem and the fix, before any model is
built or any time is spent training.
"""
import os.path as osp
from typing import List, Sequence


class ConfigError(ValueError):
    """A config that cannot work, with a message saying how to fix it."""


def _dataset_cfgs(cfg, split: str) -> List:
    """The dataset configs of a dataloader, unwrapping dataset wrappers."""
    loader = cfg.get(f'{split}_dataloader')
    if not loader:
        return []
    stack, found = [loader['dataset']], []
    while stack:
        ds = stack.pop()
        if 'datasets' in ds:
            stack.extend(ds['datasets'])
        elif 'dataset' in ds:
            stack.append(ds['dataset'])
        else:
            found.append(ds)
    return found


def check_data_files(cfg, splits: Sequence[str]) -> None:
    """Every dataset's data root and annotation file exists."""
    for split in splits:
        for ds in _dataset_cfgs(cfg, split):
            root = ds.get('data_root', '') or ''
            if root and not osp.isdir(root):
                hint = (' Generate the built-in set with '
                        '`python tools/make_shapes.py`.'
                        if 'shapes' in root else '')
                raise ConfigError(
                    f'{split} data root {root!r} does not exist. Set '
                    f'`data_root` in the config or with --cfg-options.'
                    f'{hint}')
            ann = ds.get('ann_file')
            if ann:
                path = ann if osp.isabs(ann) else osp.join(root, ann)
                if not osp.isfile(path):
                    raise ConfigError(
                        f'{split} annotation file {path!r} does not exist. '
                        'Point `ann_file` (relative to `data_root`) at a '
                        'COCO-format JSON file.')


#: Annotation files larger than this are not re-read just to check class
#: names (COCO train2017 is ~450 MB); a smaller split of the same set is.
_MAX_ANN_BYTES_TO_CHECK = 100 * 2**20


def check_classes_in_annotations(cfg, splits: Sequence[str]) -> None:
    """The config's class names exist in the annotation file's categories:
    mmdet silently drops classes it does not find, which would train a
    detector whose outputs mean something else than the config says."""
    import json
    for split in splits:
        for ds in _dataset_cfgs(cfg, split):
            classes = ds.get('metainfo', {}).get('classes')
            ann = ds.get('ann_file')
            if not classes or not ann:
                continue
            path = ann if osp.isabs(ann) else osp.join(
                ds.get('data_root', '') or '', ann)
            if osp.getsize(path) > _MAX_ANN_BYTES_TO_CHECK:
                continue
            try:
                with open(path) as f:
                    coco = json.load(f)
                names = [c['name'] for c in coco['categories']]
            except (ValueError, KeyError, TypeError) as err:
                raise ConfigError(
                    f'{path} is not a COCO-format annotation file '
                    f'({type(err).__name__}: {err}); it needs "images", '
                    '"annotations" and "categories"') from err
            check_class_names(classes, names, f'{split} dataset classes')
            return


def check_class_names(names: Sequence[str], valid: Sequence[str],
                      what: str) -> None:
    """Every name in ``names`` is one of ``valid``; no name twice."""
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ConfigError(
            f'{what}: unknown class name(s) {unknown}. Valid names are: '
            f'{list(valid)}')
    seen, twice = set(), []
    for n in names:
        if n in seen:
            twice.append(n)
        seen.add(n)
    if twice:
        raise ConfigError(f'{what}: class(es) {sorted(set(twice))} named '
                          'more than once; name each class once.')


def prepare_config(cfg, mode: str = 'train') -> None:
    """Validate ``cfg`` and fill in what follows from its forget task.

    Args:
        cfg (Config): The config, modified in place.
        mode (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.

    Raises:
        ConfigError: with a message naming the problem and the fix.
    """
    splits = ('train', 'val') if mode == 'train' else ('test', )
    check_data_files(cfg, splits)
    check_classes_in_annotations(cfg, splits[::-1])
    if cfg.get('forget_task') is not None:
        from gslora_det.task import apply_forget_task
        apply_forget_task(cfg, mode=mode)
