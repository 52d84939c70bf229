"""Forgetting tasks in-process, through mmengine's Runner.

:func:`forget` is ``tools/train.py`` on one task config, called from Python;
:func:`forget_sequence` chains tasks as :mod:`gslora_det.sequence` does
(task k loads task k-1's ``merged.pth``; finished tasks are skipped, an
interrupted one resumes), but in this process instead of child processes.

mmengine keys its ``MMLogger``, ``MessageHub``, ``Visualizer`` and
``DefaultScope`` instances by name: the experiment name, which is the config
file's name plus a timestamp of one-second resolution (and mmdet's configs
name the visualizer ``'visualizer'`` outright). Two runners of one process
that share a name share those instances: the second task would log into
the first task's file and read the first task's runtime info (its input
checkpoint, its training time). So every task gets a unique experiment
name, used for the visualizer too.
"""
import copy
import json
import logging
import os.path as osp
import uuid
from typing import Dict, List, Optional, Sequence, Union

from mmengine.config import Config

from gslora_det.cli_options import parse_cfg_options
from gslora_det.sequence import MERGED, REPORT

Options = Union[None, Dict, Sequence[str]]


def _options(cfg_options: Options) -> Dict:
    """``cfg_options`` as a dict of dotted keys: a dict, or ``key=value``
    strings parsed as ``--cfg-options`` does."""
    if not cfg_options:
        return {}
    if isinstance(cfg_options, dict):
        return dict(cfg_options)
    return parse_cfg_options(cfg_options)


def unique_experiment_name(cfg: Config) -> str:
    """``<config name>_<8 random hex>`` (the Runner appends a timestamp)."""
    stem = cfg.get('experiment_name') or (
        osp.splitext(osp.basename(cfg.filename))[0] if cfg.filename
        else 'gslora')
    return f'{stem}_{uuid.uuid4().hex[:8]}'


def task_config(config: Union[str, Config], checkpoint: str,
                forget_classes: Sequence[str], work_dir: str,
                previously_forgotten: Sequence[str] = (),
                cfg_options: Options = None,
                task_index: Optional[int] = None,
                resume: Union[bool, str] = False) -> Config:
    """The config of one task, checked (:func:`forget`'s arguments)."""
    from gslora_det.checkpoint import find_resumable
    from gslora_det.config_checks import ConfigError, prepare_config
    cfg = (Config.fromfile(config) if isinstance(config, str)
           else copy.deepcopy(config))
    hooks = [h.get('type') for h in (cfg.get('custom_hooks') or []) + (
        (cfg.get('forgetting') or {}).get('hooks') or [])]
    if 'ForgetTaskHook' not in hooks:
        raise ConfigError(f'{cfg.filename or "the config"} is not a '
                          'forgetting task config (no ForgetTaskHook in '
                          'custom_hooks): use a gslora_* task config')
    task = dict(cfg.get('forget_task') or {})
    previous = list(previously_forgotten)
    if task_index is None:  # a task after others starts A smaller
        task_index = int(task.get('index', 1))
        task_index = max(task_index, 2) if previous else task_index
    task.update(index=int(task_index), forget_classes=list(forget_classes),
                previously_forgotten=previous)
    cfg.forget_task = task
    cfg.load_from = checkpoint
    cfg.resume = False
    cfg.work_dir = work_dir
    resume_from = find_resumable(work_dir) if resume is True else resume
    if resume_from:  # mmengine restores weights, optimiser, iteration
        cfg.resume, cfg.load_from = True, resume_from
    cfg.merge_from_dict(_options(cfg_options))
    name = unique_experiment_name(cfg)
    cfg.experiment_name = name
    if isinstance(cfg.get('visualizer'), dict):
        cfg.visualizer.name = name
    prepare_config(cfg, mode='train')
    return cfg


def _release(runner) -> None:
    """Close the finished runner's log files: nothing logged later (before
    the next runner exists, mmengine's 'current' logger is this one) goes
    into this task's log."""
    for handler in list(runner.logger.handlers):
        if isinstance(handler, logging.FileHandler):
            runner.logger.removeHandler(handler)
            handler.close()


def forget(config: Union[str, Config], checkpoint: str,
           forget_classes: Sequence[str], work_dir: str,
           previously_forgotten: Sequence[str] = (),
           cfg_options: Options = None,
           task_index: Optional[int] = None,
           resume: Union[bool, str] = False) -> Dict:
    """Run one forgetting task in this process.

    Same as ``tools/train.py CONFIG --work-dir WORK_DIR --cfg-options
    load_from=CHECKPOINT ...`` with the task's classes set: the config is
    loaded, ``forget_task`` / ``load_from`` / ``work_dir`` set,
    ``cfg_options`` merged, the pre-flight checks run
    (:func:`gslora_det.config_checks.prepare_config`), then
    ``Runner.from_cfg(cfg).train()``. The work dir ends with the task's
    files (``merged.pth``, ``adapter/``, ``manifest.json``,
    ``forget_report.json``, logs); the checkpoint is only read.
    ``merged.pth`` is a plain checkpoint of the base architecture: mmdet's
    ``DetInferencer(<the base model's config>, merged.pth)`` runs it.

    Args:
        config (str | Config): A forgetting task config, e.g.
            ``configs/shapes/gslora_<detector>_task1_shapes.py``.
        checkpoint (str): The model to forget from.
        forget_classes (Sequence[str]): Classes to forget now.
        work_dir (str): The task's folder.
        previously_forgotten (Sequence[str]): Classes earlier tasks forgot
            (kept forgotten, never replayed as retained).
        cfg_options (dict | Sequence[str], optional): Overrides, as dotted
            keys (``{'train_cfg.max_iters': 100}``) or ``key=value`` strings.
        task_index (int, optional): 1-based task index (the report's, and
            the LoRA init: later tasks start A smaller). Defaults to the
            config's, at least 2 when ``previously_forgotten`` is given.
        resume (bool | str): True resumes from the newest checkpoint in
            ``work_dir`` if there is one, a path from that checkpoint.
            Defaults to False (a fresh start).

    Returns:
        dict: The task's ``forget_report.json``.

    Raises:
        gslora_det.config_checks.ConfigError: the config cannot work.
        FloatingPointError: the loss became non-finite (nothing bad was
            written; the last good checkpoint is in ``work_dir``).
    """
    from mmengine.runner import Runner
    cfg = task_config(config, checkpoint, forget_classes, work_dir,
                      previously_forgotten, cfg_options, task_index, resume)
    runner = Runner.from_cfg(cfg)
    try:
        runner.train()
    finally:
        _release(runner)
    path = osp.join(cfg.work_dir, REPORT)
    if not osp.isfile(path):
        raise RuntimeError(f'the task finished without writing {path}')
    with open(path) as f:
        return json.load(f)


def _plan(tasks, config, previously_forgotten) -> List[Dict]:
    """Each task as (config, forget, previously forgotten, index)."""
    plan, old = [], list(previously_forgotten)
    for k, task in enumerate(tasks, start=1):
        if isinstance(task, str):  # a task config states its classes
            if not osp.isfile(task):
                raise ValueError(f'task {k}: {task!r} is no config file '
                                 '(a task is a config or a class list)')
            spec = dict(Config.fromfile(task).get('forget_task') or {})
            item = dict(config=task, forget=list(spec.get(
                'forget_classes') or []), old=list(spec.get(
                    'previously_forgotten') or []),
                index=int(spec.get('index', k)))
        elif config is None:
            raise ValueError('tasks given as class lists need `config`, '
                             'the task config to run them with')
        else:
            item = dict(config=config, forget=list(task), old=list(old),
                        index=k)
        old += [c for c in item['forget'] if c not in old]
        plan.append(item)
    return plan


def forget_sequence(tasks: Sequence[Union[str, Sequence[str]]],
                    base_checkpoint: str, work_dir: str,
                    config: Optional[str] = None,
                    previously_forgotten: Sequence[str] = (),
                    cfg_options: Options = None,
                    overwrite: bool = False,
                    summary_title: str = 'GS-LoRA forgetting run'
                    ) -> List[Dict]:
    """Run (or finish) a forgetting sequence in this process.

    Task k works in ``<work_dir>/task_<k>/`` from task k-1's ``merged.pth``
    (task 1 from ``base_checkpoint``, which is only read). As
    ``tools/forget_sequence.py``: a finished task is skipped, an
    interrupted one resumes, ``sequence.json`` refuses another sequence or
    base in the same ``work_dir``, and ``summary.md`` / ``summary.json``
    are written at the end. One process; for several GPUs use
    ``tools/forget_sequence.py --launcher pytorch``.

    Args:
        tasks (Sequence): Each a task config path (classes from its
            ``forget_task``) or a list of class names to forget (run with
            ``config``; earlier tasks' classes become previously forgotten).
        base_checkpoint (str): The model to forget from.
        work_dir (str): The run directory.
        config (str, optional): Task config of the class-list tasks.
        previously_forgotten (Sequence[str]): Forgotten before task 1.
        cfg_options (dict | Sequence[str], optional): Overrides of every
            task (see :func:`forget`).
        overwrite (bool): Start anew in a run dir of another sequence.
        summary_title (str): Heading of ``summary.md``.

    Returns:
        list[dict]: The tasks' reports, in order.
    """
    from gslora_det.checkpoint import sha256_file
    from gslora_det.report.summary import write_run_summary
    from gslora_det.sequence import (BASE_SHA, SequenceError, _check_run_dir,
                                     _remove_stale_temp_files, task_dir,
                                     task_done)
    if not osp.isfile(base_checkpoint):
        raise SequenceError(f'base checkpoint not found: {base_checkpoint}')
    plan = _plan(tasks, config, previously_forgotten)
    options = _options(cfg_options)
    spec = json.loads(json.dumps(dict(
        tasks=[dict(item, config=osp.normpath(item['config']))
               for item in plan],
        base_checkpoint=osp.normpath(base_checkpoint),
        cfg_options=options, **{BASE_SHA: sha256_file(base_checkpoint)}),
        default=str))  # as read back from sequence.json: lists, not tuples
    if overwrite and osp.isdir(work_dir):
        import shutil
        for k in range(1, len(plan) + 1):
            shutil.rmtree(task_dir(work_dir, k), ignore_errors=True)
    _check_run_dir(work_dir, spec, overwrite)
    reports, previous = [], base_checkpoint
    for k, item in enumerate(plan, start=1):
        folder = task_dir(work_dir, k)
        if task_done(folder):
            print(f'[forget_sequence] task {k}: done already, skipping',
                  flush=True)
            with open(osp.join(folder, REPORT)) as f:
                reports.append(json.load(f))
        else:
            print(f'[forget_sequence] task {k}: forget {item["forget"]} '
                  f'from {previous}', flush=True)
            _remove_stale_temp_files(folder)
            reports.append(forget(item['config'], previous, item['forget'],
                                  folder, item['old'], options,
                                  item['index'], resume=True))
        previous = osp.join(folder, MERGED)
    write_run_summary(work_dir, reports, [i['config'] for i in plan],
                      base_checkpoint,
                      [f'{k}={v}' for k, v in options.items()],
                      title=summary_title)
    return reports
