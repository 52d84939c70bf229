"""Keep the detections of a task's "before" and "after" passes.

Metrics summarise; the detections themselves answer "is this the same
model?" (task k's "before" must equal task k-1's "after": a fresh LoRA
changes nothing and merging is exact) and feed before/after pictures.
mmdet's ``CocoMetric`` already writes them as COCO results JSON when given
an ``outfile_prefix``; this hook points it, for each val pass, at
``<work_dir>/{before,after}_predictions.bbox.json`` (written to a temporary
name, then renamed, so a killed pass leaves no half file). Which pass it is
comes from :func:`set_eval_phase` (``ForgetTaskHook`` sets it); a pass
with no phase is left alone. Rank 0 writes (mmengine's evaluator computes
metrics there).
"""
import os
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

#: Message-hub key of the phase of the next val passes (not checkpointed).
PHASE_KEY = 'gslora/eval_phase'
PHASES = ('before', 'after')


def set_eval_phase(runner, phase: Optional[str]) -> None:
    """Name the phase (``'before'`` / ``'after'``) of the next val passes."""
    if phase is not None and phase not in PHASES:
        raise ValueError(f'phase must be one of {PHASES}, got {phase!r}')
    runner.message_hub.update_info(PHASE_KEY, phase, resumed=False)


def predictions_path(work_dir: str, phase: str) -> str:
    """Where the detections of a phase are kept."""
    return osp.join(work_dir, f'{phase}_predictions.bbox.json')


@HOOKS.register_module()
class SavePredictionsHook(Hook):
    """Save the "before" and "after" detections as COCO results JSON."""

    priority = 'NORMAL'

    def _metrics(self, runner):
        return [m for m in runner.val_evaluator.metrics
                if hasattr(m, 'outfile_prefix')]

    def before_val_epoch(self, runner) -> None:
        phase = runner.message_hub.get_info(PHASE_KEY)
        self._phase = phase
        self._saved = {}
        for metric in self._metrics(runner) if phase else []:
            self._saved[id(metric)] = metric.outfile_prefix
            metric.outfile_prefix = osp.join(runner.work_dir,
                                             f'.{phase}_predictions.tmp')

    def after_val_epoch(self, runner, metrics=None) -> None:
        phase = getattr(self, '_phase', None)
        if not phase:
            return
        for metric in self._metrics(runner):
            if id(metric) in self._saved:
                metric.outfile_prefix = self._saved[id(metric)]
        tmp = osp.join(runner.work_dir, f'.{phase}_predictions.tmp.bbox.json')
        if is_main_process() and osp.isfile(tmp):
            os.replace(tmp, predictions_path(runner.work_dir, phase))
        self._phase = None
