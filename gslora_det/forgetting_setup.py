"""Turn a detector's own training config into a forgetting task, at run time.

A task config combines *any* detector config with the one forgetting
default (``configs/_base_/gslora_default.py``) in a few lines::

    _base_ = ['<the detector config>.py', '<repo>/configs/_base_/gslora_default.py']
    model = {{_base_.gslora_model}}          # GS-LoRA's class and constants
    train_cfg = {{_base_.gslora_train_cfg}}  # ForgetTrainLoop, step limit
    val_cfg = dict(type='ForgetValLoop')     # the forgetting metrics on
    test_cfg = dict(type='ForgetTestLoop')   # every entry point
    forget_task = dict(index=1, forget_classes=['cat'], previously_forgotten=[])

and restates none of the detector's datasets or pipelines. The
``ForgetTrainLoop`` (:mod:`gslora_det.loops`) calls :func:`apply_forgetting`
with the Runner before anything is built, on every entry point (this
repo's tools, mmdet's, ``Runner.from_cfg``), and with ``cfg.forgetting``:

* the training dataloader: the detector's training dataset is wrapped into
  a retain and a forget :class:`ForgetRetainSplit` (same pipeline, plus the
  task's meta keys), batches of ``retain_per_batch + forget_per_batch``
  images by ``RetainForgetBatchSampler``;
* the validation / test evaluators become ``ForgettingMetric``;
* the optimiser and the LR schedule are the forgetting ones (the detector's
  are its pretraining recipe);
* the checkpoint hook saves by iteration (an interrupted task resumes), and
  the task's hooks are registered (report, merge, predictions, controller).
"""
import copy
from typing import Dict, List, Optional

from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from gslora_det.config_checks import ConfigError

#: Dataset wrappers the split looks through (their repetition or class
#: balancing is a pretraining device; the split samples its own images).
_LOOK_THROUGH = ('RepeatDataset', 'ClassBalancedDataset')


def detector_train_dataset(dataloader: Dict) -> Dict:
    """The training dataset config a split wraps (through repeat and
    class-balancing wrappers).

    Raises:
        ConfigError: no dataset, or a ``ConcatDataset`` (which of its parts
            holds the task's classes is the user's call).
    """
    ds = dataloader.get('dataset')
    while isinstance(ds, dict) and \
            str(ds.get('type', '')).split('.')[-1] in _LOOK_THROUGH:
        ds = ds.get('dataset')
    if not isinstance(ds, dict):
        raise ConfigError('train_dataloader.dataset is missing: the '
                          'forgetting split wraps the detector\'s training '
                          'dataset')
    if str(ds.get('type', '')).split('.')[-1] == 'ConcatDataset':
        raise ConfigError(
            'train_dataloader.dataset is a ConcatDataset: point the '
            'forgetting task at one detection dataset (set '
            'train_dataloader.dataset to it in the task config)')
    return ds


def is_forgetting_dataloader(dataloader: Dict) -> bool:
    """Whether a dataloader config is already a task's (split roles)."""
    parts = (dataloader.get('dataset') or {}).get('datasets') or []
    return bool(parts) and all(
        isinstance(p, dict) and p.get('type') == 'ForgetRetainSplit'
        for p in parts)


def per_role_batch(dataloader: Dict, forgetting: Dict) -> List[int]:
    """``[retain, forget]`` images per batch: the settings, or half of the
    detector's own per-GPU batch each (at least one)."""
    half = max(1, int(dataloader.get('batch_size', 2)) // 2)
    retain = forgetting.get('retain_per_batch') or half
    forget = forgetting.get('forget_per_batch') or half
    return [int(retain), int(forget)]


def forgetting_dataloader(dataloader: Dict, task: Dict,
                          forgetting: Dict) -> Dict:
    """The task's training dataloader config, from the detector's.

    Args:
        dataloader (dict): The detector's ``train_dataloader``.
        task (dict): The resolved task (:func:`gslora_det.task.resolve_task`).
        forgetting (dict): ``cfg.forgetting``.
    """
    if is_forgetting_dataloader(dataloader):  # converted already
        return dataloader
    inner = copy.deepcopy(detector_train_dataset(dataloader))
    if not (inner.get('metainfo') or {}).get('classes'):
        # The full list keeps labels numbered as the detector's.
        inner['metainfo'] = dict(inner.get('metainfo') or {},
                                 classes=tuple(task['classes']))
    replay = dict(forgetting.get('replay') or {})
    replay.update(task.get('replay') or {})  # a task's own `replay` wins
    retain, forget = per_role_batch(dataloader, forgetting)
    splits = [dict(type='ForgetRetainSplit', dataset=inner, role=role,
                   forget_classes=list(task['forget']),
                   previously_forgotten=list(task['old']), **replay)
              for role in ('retain', 'forget')]
    out = {k: v for k, v in dataloader.items()
           if k not in ('dataset', 'sampler', 'batch_sampler', 'batch_size')}
    out.update(batch_size=retain + forget,
               sampler=dict(type='DefaultSampler', shuffle=True),
               batch_sampler=dict(type='RetainForgetBatchSampler',
                                  forget_per_batch=forget),
               dataset=dict(type='ConcatDataset', datasets=splits))
    return out


def forgetting_evaluators(evaluator, task: Dict):
    """``ForgettingMetric`` in place of the detector's metric(s)."""
    from gslora_det.evaluation.evaluate import forgetting_evaluator
    if evaluator is None or not isinstance(evaluator, (dict, list)):
        return evaluator  # already built, or none
    first = evaluator[0] if isinstance(evaluator, list) else evaluator
    return forgetting_evaluator(first, task['forget'], task['old'])


def _replace_checkpoint_hook(runner, cfg: Optional[Dict]) -> None:
    if not cfg:
        return
    for i, hook in enumerate(runner._hooks):
        if isinstance(hook, CheckpointHook):
            new = HOOKS.build(copy.deepcopy(cfg))
            new.priority = hook.priority
            runner._hooks[i] = new
            return
    runner.register_hook(copy.deepcopy(cfg), priority='VERY_LOW')


def _register_task_hooks(runner, hooks: List[Dict]) -> None:
    """Register the task's hooks the config does not already have."""
    have = {type(h).__name__ for h in runner._hooks}
    for cfg in hooks:
        name = str(cfg['type']).split('.')[-1]
        if name not in have:
            cfg = copy.deepcopy(cfg)
            priority = cfg.pop('priority', None)
            runner.register_hook(cfg, priority=priority)


def forgetting_optim_wrapper(forgetting: dict, model_cfg) -> dict:
    """The optimiser wrapper a forgetting task trains with.

    ``forgetting.optim_wrapper``; with ``model.group_lasso_cfg.mode=
    'proximal'`` a plain ``OptimWrapper`` becomes
    ``ProximalGroupLassoOptimWrapper``, which applies the prox after each
    step, so that the mode is the one key a user sets.
    """
    wrapper = copy.deepcopy(dict(forgetting['optim_wrapper']))
    mode = ((model_cfg or {}).get('group_lasso_cfg') or {}).get(
        'mode', 'penalty')
    if mode == 'proximal' and wrapper.get('type', 'OptimWrapper') in (
            'OptimWrapper', 'mmengine.OptimWrapper'):
        wrapper['type'] = 'ProximalGroupLassoOptimWrapper'
    return wrapper


def apply_forgetting(runner, task: Dict, dataloader: Dict) -> Dict:
    """Apply ``runner.cfg.forgetting`` to a Runner whose loops, optimiser
    and schedulers are still configs; return the training dataloader
    config to build.

    A no-op (the dataloader is returned as is) when the config has no
    ``forgetting`` section (the reference-style task configs state their
    data, optimiser and hooks themselves).
    """
    forgetting = runner.cfg.get('forgetting')
    if not forgetting:
        return dataloader
    forgetting = copy.deepcopy(dict(forgetting))
    dataloader = forgetting_dataloader(dataloader, task, forgetting)
    runner._val_evaluator = forgetting_evaluators(runner._val_evaluator,
                                                  task)
    runner._test_evaluator = forgetting_evaluators(runner._test_evaluator,
                                                   task)
    if isinstance(runner.optim_wrapper, dict) and \
            forgetting.get('optim_wrapper'):
        runner.optim_wrapper = forgetting_optim_wrapper(
            forgetting, runner.cfg.get('model'))
    if 'param_scheduler' in forgetting and \
            not _built(runner.param_schedulers):
        runner.param_schedulers = copy.deepcopy(
            forgetting['param_scheduler']) or None
    # What reads the config later (BaselineStateHook's importance batches,
    # the manifest) sees the task's data, not the detector's.
    runner.cfg.train_dataloader = copy.deepcopy(dataloader)
    _replace_checkpoint_hook(runner, forgetting.get('checkpoint'))
    _register_task_hooks(runner, forgetting.get('hooks') or [])
    # An iteration-based task: log "Iter(train) [i/N]", not epochs.
    runner.log_processor.by_epoch = False
    return dataloader


def _built(schedulers) -> bool:
    from mmengine.optim import _ParamScheduler
    items = schedulers if isinstance(schedulers, list) else [schedulers]
    return any(isinstance(s, _ParamScheduler) for s in items)
