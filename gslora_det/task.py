"""A forgetting task's class lists: checks, and filling them into a config.

A task config states its classes (and replay sampling) once::

    forget_task = dict(index=2, forget_classes=['cat', 'dog'],
                       previously_forgotten=['car'])

    replay = dict(sample_ratio=0.1, k_shot=None, sample_seed=0)

and :func:`apply_forget_task` writes them into every
``ForgetRetainCocoDataset`` and ``ForgettingMetric`` of the config and the
task index into the model, after checking them against the dataset's
classes. Retained classes are derived: every class neither forgotten now
nor before.
"""
from typing import Dict, List, Sequence

from gslora_det.config_checks import ConfigError, check_class_names

FILLED_TYPES = ('ForgetRetainCocoDataset', 'ForgettingMetric')


def dataset_classes(cfg) -> List[str]:
    """The detector's full class list as the config's datasets declare it."""
    classes = cfg.get('metainfo', {}).get('classes')
    if not classes:
        for split in ('train', 'val', 'test'):
            for node in _walk(cfg.get(f'{split}_dataloader', {})):
                classes = node.get('metainfo', {}).get('classes')
                if classes:
                    break
            if classes:
                break
    if not classes:
        raise ConfigError('the config names no classes: set '
                          '`metainfo = dict(classes=(...))` with the '
                          "detector's full, ordered class list")
    return list(classes)


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


def apply_forget_task(cfg, mode: str = 'train') -> Dict[str, List[str]]:
    """Check ``cfg.forget_task`` and fill its lists into ``cfg`` in place.

    Returns:
        dict[str, list[str]]: ``forget``, ``retain`` and ``old`` classes.
    """
    task = cfg.forget_task
    classes = dataset_classes(cfg)
    forget = list(task.get('forget_classes') or [])
    previous = list(task.get('previously_forgotten') or [])
    retained = check_task_classes(classes, forget, previous)
    replay = dict(cfg.get('replay') or {})
    for section in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                    'val_evaluator', 'test_evaluator'):
        for node in _walk(cfg.get(section)):
            if node.get('type') in FILLED_TYPES:
                node['forget_classes'] = forget
                node['previously_forgotten'] = previous
            if node.get('type') == 'ForgetRetainCocoDataset':
                # `replay` (sample_ratio, k_shot, sample_seed) is a live
                # knob: `--cfg-options replay.k_shot=20` reaches both splits.
                node.update(replay)
    model = cfg.get('model', {})
    if 'GSLoRA' in str(model.get('type', '')):
        model['task_index'] = int(task.get('index', 1))
    head = model.get('bbox_head', {})
    if head.get('num_classes') not in (None, len(classes)):
        raise ConfigError(
            f'model.bbox_head.num_classes is {head["num_classes"]} but '
            f'the dataset has {len(classes)} classes')
    return dict(forget=forget, retain=retained, old=previous)
