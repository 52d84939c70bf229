"""mmengine loops that carry a forgetting task to its datasets and metric.

A task config states its classes once (``forget_task``, ``replay``), and the
split datasets (``ForgetRetainCocoDataset``), the ``ForgettingMetric`` and
the model's task index need them. Filling them in must happen whatever
built the Runner: this repo's ``tools/train.py``, mmdet's ``tools/train.py``,
``mim train mmdet``, or ``Runner.from_cfg(cfg).train()`` from Python. Why
loops and not another extension point of mmengine:

* a custom ``runner_type`` is honoured by mmdet's ``tools/train.py`` but not
  by ``Runner.from_cfg``;
* hooks run only after the Runner has built its dataloaders
  (``before_run`` comes after ``build_train_loop``);
* the Runner builds every loop from ``train_cfg`` / ``val_cfg`` /
  ``test_cfg`` through the ``LOOPS`` registry with ``runner=self`` and the
  still-unbuilt dataloader and evaluator configs, on every entry point.

So the forgetting configs set ``train_cfg.type`` to
``ForgetEpochBasedTrainLoop`` (or ``ForgetIterBasedTrainLoop``) and
``val_cfg`` / ``test_cfg`` to ``ForgetValLoop`` / ``ForgetTestLoop``; each
resolves the task from ``runner.cfg`` (with the pre-flight checks of
:func:`gslora_det.config_checks.prepare_config`, once per process), fills
its own dataloader and evaluator configs, then builds them as the stock
loop does. A config without ``forget_task`` runs exactly as the stock loop.
"""
from typing import Dict, Optional

from mmengine.model import is_model_wrapper
from mmengine.runner import (EpochBasedTrainLoop, IterBasedTrainLoop,
                             TestLoop, ValLoop)

from mmdet.registry import LOOPS

from gslora_det.data import coco_cache
from gslora_det.data.forget_retain_split import clear_inner_cache


def _runner_task(runner, mode: str) -> Optional[Dict]:
    """The runner's resolved task (pre-flight checks on the first call)."""
    cfg = runner.cfg
    if cfg.get('forget_task') is None:
        return None
    cached = getattr(runner, '_gslora_task', None)
    if cached is None:
        from gslora_det.config_checks import prepare_config
        from gslora_det.task import resolve_task
        prepare_config(cfg, mode=mode, model=runner.model,
                       log=runner.logger.info)
        cached = resolve_task(cfg, mode)
        runner._gslora_task = cached
        runner.logger.info(
            f'forgetting task {cached["index"]}: forget {cached["forget"]}; '
            f'previously forgotten {cached["old"] or "none"}; retain '
            f'{len(cached["retain"])} classes')
    return cached


def _fill(runner, mode: str, *sections) -> None:
    task = _runner_task(runner, mode)
    if task is None:
        return
    from gslora_det.task import fill_task
    for section in sections:
        if isinstance(section, dict):  # built objects are left alone
            fill_task(section, task)


def _forgetting_metric(runner, mode: str, evaluator):
    """With the one forgetting default (``cfg.forgetting``), the detector's
    own metric becomes ``ForgettingMetric`` (a reference-style config
    states it)."""
    task = _runner_task(runner, mode)
    if task is None or not runner.cfg.get('forgetting'):
        return evaluator
    from gslora_det.forgetting_setup import forgetting_evaluators
    return forgetting_evaluators(evaluator, task)


def _set_task_index(runner, index: int) -> None:
    """Point the model's fresh LoRA at its task's init gain. The Runner
    initialises the weights (``init_weights``) after building the train
    loop, which re-draws A with this gain."""
    model = runner.model.module if is_model_wrapper(runner.model) else \
        runner.model
    if hasattr(model, 'set_task_index'):
        model.set_task_index(index)


class _ForgetTrainMixin:
    """Fill the task into the training dataloader before it is built; with
    a ``forgetting`` section, first turn the detector's own training setup
    into the task's (:func:`gslora_det.forgetting_setup.apply_forgetting`).
    """

    def __init__(self, runner, dataloader, *args, **kwargs) -> None:
        task = _runner_task(runner, 'train')
        if task is not None and isinstance(dataloader, dict):
            from gslora_det.forgetting_setup import apply_forgetting
            dataloader = apply_forgetting(runner, task, dataloader)
        _fill(runner, 'train', dataloader, runner._val_evaluator,
              runner._val_dataloader)
        if task is not None:
            _set_task_index(runner, task['index'])
        super().__init__(runner, dataloader, *args, **kwargs)
        # Both splits are built: the parsed annotation file can go.
        coco_cache.clear()
        clear_inner_cache()


@LOOPS.register_module()
class ForgetEpochBasedTrainLoop(_ForgetTrainMixin, EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that first fills in the forgetting task."""


@LOOPS.register_module()
class ForgetIterBasedTrainLoop(_ForgetTrainMixin, IterBasedTrainLoop):
    """``IterBasedTrainLoop`` that first fills in the forgetting task."""


@LOOPS.register_module()
class ForgetTrainLoop(_ForgetTrainMixin, IterBasedTrainLoop):
    """The one forgetting default's loop: iteration-based (a forgetting
    task is a step budget, ended early by the controller), validating once
    at the end unless ``val_interval`` says otherwise.

    Args:
        max_iters (int): The step limit of the task.
        val_interval (int, optional): Defaults to ``max_iters``.
    """

    def __init__(self, runner, dataloader, max_iters: int,
                 val_interval: Optional[int] = None, **kwargs) -> None:
        super().__init__(runner, dataloader, max_iters=max_iters,
                         val_interval=val_interval or max_iters, **kwargs)


@LOOPS.register_module()
class ForgetValLoop(ValLoop):
    """``ValLoop`` whose dataloader and ``ForgettingMetric`` get the task."""

    def __init__(self, runner, dataloader, evaluator, *args,
                 **kwargs) -> None:
        evaluator = _forgetting_metric(runner, 'train', evaluator)
        _fill(runner, 'train', dataloader, evaluator)
        super().__init__(runner, dataloader, evaluator, *args, **kwargs)


@LOOPS.register_module()
class ForgetTestLoop(TestLoop):
    """``TestLoop`` whose dataloader and ``ForgettingMetric`` get the
    task."""

    def __init__(self, runner, dataloader, evaluator, *args,
                 **kwargs) -> None:
        evaluator = _forgetting_metric(runner, 'test', evaluator)
        _fill(runner, 'test', dataloader, evaluator)
        super().__init__(runner, dataloader, evaluator, *args, **kwargs)
