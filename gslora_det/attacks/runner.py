"""Run one attack (or the unattacked evaluation) with mmengine's Runner."""
import logging
import time
from typing import Dict, Mapping, Optional, Tuple

from mmengine.runner import Runner

from gslora_det.attacks.metric import AttackMetric
from gslora_det.attacks.params import changed_parameters, trainable_summary
from gslora_det.console import quiet_console
from gslora_det.evaluation.evaluate import strip_prefix


def run_one(cfg, initial: Optional[Mapping] = None,
            close_logs: bool = True) -> Tuple[Dict, Runner]:
    """Train (unless the config has no training set), then test.

    Args:
        cfg (Config): From :func:`~gslora_det.attacks.configs.run_cfg`.
        initial (Mapping, optional): The checkpoint's state dict; when
            given, the result says how many trainable parameters changed
            and that no frozen one did.
        close_logs (bool): Close the run's log file when done (a loop of
            runs would otherwise keep one file open per run). Defaults to
            True.

    Returns:
        tuple: ``(result, runner)``; ``result`` holds ``metrics`` (the
        ``ForgettingMetric`` keys without prefix, 0-1), ``confusion``
        (:attr:`AttackMetric.confusion`), ``trained`` (:func:`~gslora_det.
        attacks.params.trainable_summary` plus the change check; None
        without training), ``dataset_size`` and ``wall_s``.
    """
    t0 = time.time()
    # The console leaves out the config/environment dumps of each run;
    # the run's log file keeps them.
    runner = quiet_console(Runner).from_cfg(cfg)
    trained, size = None, None
    if cfg.get('train_dataloader'):
        runner.train()
        trained = trainable_summary(runner.model)
        if initial is not None:
            changes = changed_parameters(runner.model, initial)
            trained.update(
                changed_tensors=len(changes['trainable_changed']),
                unchanged_tensors=len(changes['trainable_unchanged']),
                frozen_changed=changes['frozen_changed'])
        size = len(runner.train_dataloader.dataset)
    metrics = strip_prefix(runner.test())
    metric = next(m for m in runner.test_evaluator.metrics
                  if isinstance(m, AttackMetric))
    result = dict(metrics=metrics, confusion=metric.confusion,
                  trained=trained, dataset_size=size,
                  wall_s=round(time.time() - t0, 1))
    if close_logs:
        for handler in list(runner.logger.handlers):
            if isinstance(handler, logging.FileHandler):
                handler.close()
                runner.logger.removeHandler(handler)
    return result, runner
