"""A forgetting task's class lists: checks, and filling them into a config.

A task config states its classes (and replay sampling) once::

    forget_task = dict(index=2, forget_classes=['cat', 'dog'],
                       previously_forgotten=['car'])

    replay = dict(sample_ratio=0.1, k_shot=None, sample_seed=0)

and :func:`fill_task` writes them into every ``ForgetRetainCocoDataset`` and
``ForgettingMetric`` of a config section, after :func:`resolve_task` has
checked them against the dataset's classes. Retained classes are derived:
every class neither forgotten now nor before. The registered loops of
:mod:`gslora_det.loops` call these for whatever entry point built the
Runner; :func:`apply_forget_task` does the same on a whole config.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence

from gslora_det.config_checks import (ConfigError, check_class_names,
                                      dataset_cfgs)

FILLED_TYPES = ('ForgetRetainCocoDataset', 'ForgettingMetric')


def _declared_classes(cfg) -> Optional[List[str]]:
    """``metainfo.classes`` of the config or of any of its datasets."""
    classes = (cfg.get('metainfo') or {}).get('classes')
    if classes:
        return list(classes)
    for split in ('train', 'val', 'test'):
        for node in _walk(cfg.get(f'{split}_dataloader', {})):
            classes = (node.get('metainfo') or {}).get('classes')
            if classes:
                return list(classes)
    return None


def annotation_file(ds) -> Optional[str]:
    """A dataset config's annotation file path (``data_root`` applied)."""
    ann = ds.get('ann_file')
    if not ann:
        return None
    return ann if osp.isabs(ann) else osp.join(ds.get('data_root') or '',
                                               ann)


def file_category_names(path: str) -> List[str]:
    """Category names of a COCO file, in the file's order (the order in
    which mmdet's ``CocoDataset`` numbers labels)."""
    from gslora_det.data import coco_cache
    try:
        return [c['name'] for c in coco_cache.load_json(path)['categories']]
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f'{path} is not a COCO-format annotation file '
            f'({type(err).__name__}: {err}); it needs "images", '
            '"annotations" and "categories"') from err


def _registered_metainfo_classes(type_name) -> Optional[List[str]]:
    """``METAINFO['classes']`` of a registered dataset type, if any."""
    if not isinstance(type_name, str):
        type_name = getattr(type_name, '__name__', '')
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cls = DATASETS.get(type_name.split('.')[-1])
    classes = getattr(cls, 'METAINFO', {}).get('classes') if cls else None
    return list(classes) if classes else None


def dataset_classes(cfg, mode: str = 'train') -> List[str]:
    """The detector's full class list.

    From ``metainfo.classes`` when the config sets it; otherwise from the
    dataset type's ``METAINFO`` (mmdet's ``CocoDataset`` carries COCO's 80
    names there), but only if the annotation file's categories are exactly
    those names in that order, so a user's own data never silently gets
    COCO's names.

    Raises:
        ConfigError: no class list can be found, or ``METAINFO`` does not
            match the annotation file (the message names both lists).
    """
    declared = _declared_classes(cfg)
    if declared:
        return declared
    splits = ('train', 'val', 'test') if mode == 'train' else (
        'test', 'val', 'train')
    for split in splits:
        for ds in dataset_cfgs(cfg, split):
            path = annotation_file(ds)
            meta = _registered_metainfo_classes(ds.get('type', ''))
            if not meta or not path or not osp.isfile(path):
                continue
            names = file_category_names(path)
            if names != meta:
                raise ConfigError(
                    f'the config sets no `metainfo.classes`, and the '
                    f'categories of {path} ({len(names)}: {names}) are not '
                    f'those of {ds.get("type")}.METAINFO ({len(meta)}: '
                    f'{meta}). Set `metainfo = dict(classes=(...))` (and '
                    'pass it to every dataset) with the names your '
                    'detector was trained on, in the annotation file\'s '
                    'category order.')
            return meta
    raise ConfigError('the config names no classes: set '
                      '`metainfo = dict(classes=(...))` with the '
                      "detector's full, ordered class list")


def check_task_classes(classes: Sequence[str], forget: Sequence[str],
                       previous: Sequence[str]) -> List[str]:
    """Validate a task's lists; return the retained classes.

    Raises:
        ConfigError: empty forget list, unknown or repeated names, a class
            both forgotten now and before, or nothing left to retain.
    """
    if not forget:
        raise ConfigError('forget_task.forget_classes is empty: name the '
                          f'classes to forget, from {list(classes)}')
    check_class_names(forget, classes, 'forget_task.forget_classes')
    check_class_names(previous, classes, 'forget_task.previously_forgotten')
    both = sorted(set(forget) & set(previous))
    if both:
        raise ConfigError(
            f'class(es) {both} are in both forget_classes and '
            'previously_forgotten: a class is forgotten once; drop it from '
            'this task')
    retained = [c for c in classes if c not in set(forget) | set(previous)]
    if not retained:
        raise ConfigError(
            'this task would forget every class: GS-LoRA needs retained '
            'classes to replay. Keep at least one class.')
    return retained


def _walk(node):
    """Yield every dict in a nested config (dicts and lists)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _walk(value)


def resolve_task(cfg, mode: str = 'train') -> Dict:
    """Check ``cfg.forget_task`` against the dataset's classes.

    Returns:
        dict: ``index``, ``forget``, ``retain``, ``old`` (class names),
        ``classes`` (all) and ``replay`` (the sampling settings).
    """
    task = cfg.forget_task
    classes = dataset_classes(cfg, mode)
    forget = list(task.get('forget_classes') or [])
    previous = list(task.get('previously_forgotten') or [])
    retained = check_task_classes(classes, forget, previous)
    return dict(index=int(task.get('index', 1)), forget=forget,
                retain=retained, old=previous, classes=classes,
                replay=dict(cfg.get('replay') or {}))


def fill_task(section, task: Dict) -> None:
    """Write a resolved task into every split dataset and forgetting metric
    of a config section (a dataloader or evaluator dict), in place."""
    for node in _walk(section):
        if node.get('type') in FILLED_TYPES:
            node['forget_classes'] = list(task['forget'])
            node['previously_forgotten'] = list(task['old'])
        if node.get('type') == 'ForgetRetainCocoDataset':
            # `replay` (sample_ratio, k_shot, sample_seed) is a live
            # knob: `--cfg-options replay.k_shot=20` reaches both splits.
            node.update(task['replay'])
            if not (node.get('metainfo') or {}).get('classes'):
                # The full list keeps labels numbered as the detector's.
                node['metainfo'] = dict(node.get('metainfo') or {},
                                        classes=tuple(task['classes']))


def apply_forget_task(cfg, mode: str = 'train') -> Dict[str, List[str]]:
    """Check ``cfg.forget_task`` and fill its lists into ``cfg`` in place.

    Returns:
        dict[str, list[str]]: ``forget``, ``retain`` and ``old`` classes.
    """
    task = resolve_task(cfg, mode)
    if cfg.get('forgetting'):  # the one default: the detector's own setup
        from gslora_det.forgetting_setup import (forgetting_dataloader,
                                                 forgetting_evaluators)
        if mode == 'train' and cfg.get('train_dataloader'):
            cfg.train_dataloader = forgetting_dataloader(
                cfg.train_dataloader, task, cfg.forgetting)
        for section in ('val_evaluator', 'test_evaluator'):
            if cfg.get(section):
                cfg[section] = forgetting_evaluators(cfg[section], task)
    for section in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                    'val_evaluator', 'test_evaluator'):
        if cfg.get(section) is not None:
            fill_task(cfg.get(section), task)
    model = cfg.get('model', {})
    if 'GSLoRA' in str(model.get('type', '')):
        model['task_index'] = task['index']
    head = model.get('bbox_head', {})
    if head.get('num_classes') not in (None, len(task['classes'])):
        raise ConfigError(
            f'model.bbox_head.num_classes is {head["num_classes"]} but '
            f'the dataset has {len(task["classes"])} classes')
    return dict(forget=task['forget'], retain=task['retain'],
                old=task['old'])
