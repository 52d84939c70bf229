"""Set up and run a test pass that answers the forgetting questions.

Shared by ``tools/test.py`` (any checkpoint) and ``tools/verify.py`` (a
merged checkpoint against its manifest): switch the config's test
evaluator to :class:`ForgettingMetric` with the task's class lists, point
the test data somewhere else, turn on mmdet's visualization hook, and run
mmengine's test loop (optionally dumping the predictions as mmdet does).
"""
import os.path as osp
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from gslora_det.config_checks import _dataset_cfgs as dataset_cfgs

PREFIX = 'forgetting/'


def forgetting_evaluator(evaluator: Mapping,
                         forget_classes: Sequence[str],
                         previously_forgotten: Sequence[str],
                         before: Optional[Mapping] = None) -> Dict:
    """Turn a test evaluator config into a ``ForgettingMetric`` config.

    Args:
        evaluator (Mapping): The config's ``test_evaluator``; a
            ``ForgettingMetric`` keeps its settings, any other metric keeps
            only ``ann_file``, ``backend_args`` and ``outfile_prefix``.
        forget_classes (Sequence[str]): Classes whose forgetting is measured.
        previously_forgotten (Sequence[str]): Classes forgotten earlier.
        before (Mapping, optional): Metrics before forgetting (adds H-Mean).

    Returns:
        dict: The evaluator config.
    """
    evaluator = dict(evaluator)
    if evaluator.get('type') != 'ForgettingMetric':
        keep = ('ann_file', 'backend_args', 'outfile_prefix')
        evaluator = {k: v for k, v in evaluator.items() if k in keep}
        evaluator['type'] = 'ForgettingMetric'
    evaluator['forget_classes'] = list(forget_classes)
    evaluator['previously_forgotten'] = list(previously_forgotten)
    if before is not None:
        evaluator['before'] = dict(before)
    return evaluator


def prepare_forgetting_test(
        cfg,
        forget_classes: Optional[Sequence[str]] = None,
        previously_forgotten: Optional[Sequence[str]] = None,
        before: Optional[Mapping] = None) -> bool:
    """Check a test config and, when there are classes to forget (given, or
    the config's ``forget_task``), switch it to ``ForgettingMetric``.

    Args:
        cfg (Config): The config, modified in place.
        forget_classes (Sequence[str], optional): Overrides the task's list.
        previously_forgotten (Sequence[str], optional): Overrides the task's
            list.
        before (Mapping, optional): Metrics before forgetting.

    Returns:
        bool: Whether the test pass measures forgetting.

    Raises:
        ConfigError: a config or class list that cannot work.
    """
    from gslora_det.config_checks import prepare_config
    from gslora_det.task import check_task_classes, dataset_classes
    prepare_config(cfg, mode='test')
    task = dict(cfg.get('forget_task') or {})
    if not (forget_classes or task):
        return False
    ev = forgetting_evaluator(
        cfg.test_evaluator, forget_classes or task.get('forget_classes', []),
        previously_forgotten if previously_forgotten is not None else
        task.get('previously_forgotten', []), before)
    check_task_classes(dataset_classes(cfg), ev['forget_classes'],
                       ev['previously_forgotten'])
    cfg.test_evaluator = ev
    return True


def set_test_data(cfg, data_root: Optional[str] = None,
                  ann_file: Optional[str] = None) -> None:
    """Point the test dataset(s) and evaluator at other data.

    Args:
        cfg (Config): The config, modified in place.
        data_root (str, optional): New ``data_root`` of every test dataset.
        ann_file (str, optional): New ``ann_file`` (relative to the data
            root, as in mmdet dataset configs).
    """
    if data_root is None and ann_file is None:
        return
    datasets = dataset_cfgs(cfg, 'test')
    for ds in datasets:
        if data_root is not None:
            ds['data_root'] = data_root
        if ann_file is not None:
            ds['ann_file'] = ann_file
    if not datasets:
        return
    ds = datasets[0]
    path = ds.get('ann_file')
    if path and not osp.isabs(path):
        path = osp.join(ds.get('data_root') or '', path)
    evaluators = cfg.test_evaluator
    for ev in evaluators if isinstance(evaluators, list) else [evaluators]:
        if ev.get('ann_file') is not None:
            ev['ann_file'] = path


def enable_visualization(cfg, show_dir: Optional[str] = None,
                         score_thr: float = 0.3, show: bool = False,
                         wait_time: float = 2.0) -> None:
    """Turn on the config's ``default_hooks.visualization`` (mmdet's
    ``DetVisualizationHook``) for the test pass, as mmdet's tools/test.py.

    Args:
        cfg (Config): The config, modified in place.
        show_dir (str, optional): Where painted images go; a relative path
            ends up under ``<work_dir>/<timestamp>/`` (mmdet's hook puts it
            there).
        score_thr (float): Detections below this score are not drawn.
            Defaults to 0.3.
        show (bool): Show each image in a window. Defaults to False.
        wait_time (float): Seconds each shown image stays. Defaults to 2.

    Raises:
        ConfigError: the config has no visualization hook.
    """
    from types import SimpleNamespace

    from mmdet.engine.hooks.utils import trigger_visualization_hook

    from gslora_det.config_checks import ConfigError
    hooks = cfg.get('default_hooks') or {}
    if not hooks.get('visualization'):
        raise ConfigError(
            '--show/--show-dir need a visualization hook in the config: add '
            "default_hooks = dict(visualization=dict(type="
            "'DetVisualizationHook')) (mmdet's _base_/default_runtime.py "
            'has it) and a visualizer, e.g. visualizer = dict(type='
            "'DetLocalVisualizer')")
    trigger_visualization_hook(cfg, SimpleNamespace(
        show=show, show_dir=show_dir, wait_time=wait_time))
    cfg.default_hooks.visualization['score_thr'] = float(score_thr)


def strip_prefix(metrics: Mapping) -> Dict:
    """``forgetting/mAP_forget`` -> ``mAP_forget``."""
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v
            for k, v in metrics.items()}


def run_test(cfg, dump_to: Optional[str] = None) -> Tuple[
        Dict, Dict[str, List[str]], object]:
    """Build a Runner from ``cfg`` and run its test loop.

    Args:
        cfg (Config): The test config.
        dump_to (str, optional): Also dump the predictions to this ``.pkl``
            file (mmdet's ``DumpDetResults``, as its tools/test.py
            ``--out``).

    Returns:
        tuple: The metrics as the evaluator returns them, the class sets
        (``forget``, ``retain``, ``old``; empty without a
        ``ForgettingMetric``), and the Runner (e.g. to find its hooks).
    """
    from mmdet.evaluation import DumpDetResults
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    if dump_to is not None:
        # Appended after the metric: metrics[0] stays the one reporting.
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=dump_to))
    metrics = runner.test()
    metric = runner.test_evaluator.metrics[0]
    sets = metric.class_sets() if hasattr(metric, 'class_sets') else {}
    return metrics, sets, runner
