"""The gold standard: the detector retrained without the forgotten classes.

Same config, same recipe (schedule, optimizer, pipeline, ``num_classes``,
label numbering), trained from its initialisation on the training set
with the forgotten classes' objects dropped (their images stay: the class
is background, as for a model that never saw it). The detector config's
own ``load_from`` (a checkpoint that may know the classes) is not used.
Interrupted runs resume from the newest loadable checkpoint in the work
directory (mmengine's resume); the result is published as
``<work_dir>/retrained.pth`` (weights and meta only, weights-only
loadable).
"""
import copy
import os.path as osp
from typing import Callable, Optional, Sequence

from mmengine.config import Config

from gslora_det.config_checks import ConfigError, check_class_names

PUBLISHED = 'retrained.pth'


def wrap_leaves(node: dict, wrap: Callable[[dict], dict]) -> dict:
    """Apply ``wrap`` to every innermost dataset config of ``node``
    (through ``dataset`` / ``datasets`` of wrappers), keeping the wrappers.
    """
    node = copy.deepcopy(node)
    if 'datasets' in node:
        node['datasets'] = [wrap_leaves(d, wrap) for d in node['datasets']]
    elif 'dataset' in node:
        node['dataset'] = wrap_leaves(node['dataset'], wrap)
    else:
        node = wrap(node)
    return node


def retrain_config(config: str, forget_classes: Sequence[str],
                   work_dir: str, cfg_options: Optional[dict] = None,
                   log: Callable[[str], None] = print) -> Config:
    """The detector's config training without ``forget_classes``.

    Raises:
        ConfigError: a task config, unknown or repeated class names, or
            every class dropped.
    """
    from gslora_det.checkpoint import find_resumable
    from gslora_det.task import dataset_classes
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('forget_task') is not None:
        raise ConfigError(
            f'{config} is a forgetting-task config: retrain the detector '
            'with its own config (the one the task builds on)')
    classes = dataset_classes(cfg)
    if not forget_classes:
        raise ConfigError('--forget-classes is empty: name the classes to '
                          f'retrain without, from {classes}')
    check_class_names(forget_classes, classes, '--forget-classes')
    if set(forget_classes) >= set(classes):
        raise ConfigError('retraining without every class leaves nothing '
                          'to learn: keep at least one class')
    cfg.train_dataloader.dataset = wrap_leaves(
        cfg.train_dataloader.dataset,
        lambda ds: dict(type='DropClassesDataset', dataset=ds,
                        drop_classes=list(forget_classes)))
    imports = list((cfg.get('custom_imports') or {}).get('imports') or [])
    for name in ('gslora_det', 'gslora_det.attacks'):
        if name not in imports:
            imports.append(name)
    cfg.custom_imports = dict(imports=imports, allow_failed_imports=False)
    cfg.work_dir = work_dir
    if cfg.get('load_from'):
        log(f'not loading the config\'s load_from {cfg.load_from}: it may '
            'know the forgotten classes; training from the initialisation')
    cfg.load_from, cfg.resume = None, False
    last = find_resumable(work_dir) if osp.isdir(work_dir) else None
    if last:
        check_same_run(last, forget_classes)
        log(f'resuming from {last}')
        cfg.load_from, cfg.resume = last, True
    # Marks the run in every checkpoint's meta['cfg'] (see check_same_run).
    cfg.retrained_without = list(forget_classes)
    return cfg


def check_same_run(path: str, forget_classes: Sequence[str]) -> None:
    """Resume only a retraining without the same classes.

    A work dir that holds another run's checkpoints (the base model's
    pretraining, say) would otherwise be "resumed" into a gold standard
    that knows the classes.

    Raises:
        ConfigError: ``path`` is not from ``retrain_without`` with
            ``forget_classes``.
    """
    from gslora_det.checkpoint import load_checkpoint_safely
    text = str((load_checkpoint_safely(path).get('meta') or {})
               .get('cfg', ''))
    # pretty_text puts one name a line, with a trailing comma.
    flat = ''.join(text.split()).replace('"', "'").replace(',]', ']')
    mark = 'retrained_without=' + repr(list(forget_classes)).replace(' ', '')
    if mark not in flat:
        raise ConfigError(
            f'{path} is not a checkpoint of retraining without '
            f'{list(forget_classes)} (its config has no `{mark}`): the '
            'work dir holds another run. Pass an empty --work-dir (inputs '
            'are never overwritten or resumed into)')


def retrain_without(config: str, forget_classes: Sequence[str],
                    work_dir: str, cfg_options: Optional[dict] = None,
                    log: Callable[[str], None] = print) -> str:
    """Train the detector without ``forget_classes``; publish the model.

    Args:
        config (str): The detector's own config.
        forget_classes (Sequence[str]): Classes whose objects are dropped.
        work_dir (str): Run folder (checkpoints, logs, ``retrained.pth``).
        cfg_options (dict, optional): Config overrides.
        log (callable): Receives status lines. Defaults to print.

    Returns:
        str: Path of ``retrained.pth`` (an existing one is kept, not
        retrained).
    """
    import gslora_det.attacks  # noqa: F401  (registers the wrapper)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import get_state_dict, weights_to_cpu

    from gslora_det.checkpoint import save_checkpoint_atomic
    from gslora_det.config_checks import prepare_config
    out = osp.join(work_dir, PUBLISHED)
    if osp.isfile(out):
        log(f'{out} exists: already retrained (delete it to train again)')
        return out
    cfg = retrain_config(config, forget_classes, work_dir, cfg_options, log)
    prepare_config(cfg, mode='train')
    runner = (RUNNERS.build(cfg) if 'runner_type' in cfg else
              Runner.from_cfg(cfg))
    dataset = runner.train_dataloader.dataset
    runner.logger.info(
        f'retraining without {list(forget_classes)}: '
        f'{getattr(dataset, "num_dropped", "?")} objects dropped, '
        f'{len(dataset)} images kept')
    runner.train()
    meta = dict(dataset_meta=dataset.metainfo,
                retrained_without=list(forget_classes),
                config=osp.abspath(config), epoch=runner.epoch,
                iter=runner.iter)
    save_checkpoint_atomic(dict(meta=meta, state_dict=weights_to_cpu(
        get_state_dict(runner.model))), out)
    log(f'retrained model written to {out}')
    return out
