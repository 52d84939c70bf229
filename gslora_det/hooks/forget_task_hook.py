"""End-of-task bookkeeping of a GS-LoRA forgetting task.

* before training: evaluate the input model (LoRA is a no-op then), once:
  cached in the work dir, keyed by the input checkpoint's SHA-256 and the
  evaluation settings (:mod:`gslora_det.before_cache`), so that a resumed
  run does not evaluate a half-trained model as "before" and a stale cache
  is never reused (the report says which it was);
* during training: accumulate training time across resumes;
* after training: merge LoRA into the weights, save the merged model as a
  plain mmdet checkpoint and the adapter as safetensors, then write the
  audit ``manifest.json`` (hashes, config, versions, times, metrics), the
  per-class AP plot ``per_class_ap.png`` and, last (it marks the task
  done), ``forget_report.json`` with before/after metrics and group norms.

Only rank 0 writes files; every rank computes the same values (the LoRA
weights are DDP-synchronised, metrics are gathered and broadcast by
mmengine's evaluator), and every rank leaves ``after_train`` only once rank
0 has written its files.
"""
import json
import os.path as osp
import time
from typing import Dict, Optional

import torch
from mmengine.dist import barrier, broadcast_object_list, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from gslora_det.adapter import save_task_adapter
from gslora_det.before_cache import (CACHE_NAME, cache_entry, input_weights,
                                     plan_before)
from gslora_det.checkpoint import save_checkpoint_atomic
from gslora_det.distributed import check_ranks_agree
from gslora_det.evaluation.evaluate import strip_prefix
from gslora_det.group_lasso import group_norms
from gslora_det.hooks.eval_progress_hook import set_eval_subject
from gslora_det.hooks.save_predictions_hook import set_eval_phase
from gslora_det.inject import lora_state_dict, merge_lora, merged_state_dict
from gslora_det.io_utils import atomic_write_text
from gslora_det.lora import lora_modules
from gslora_det.report.manifest import (MANIFEST_NAME, build_manifest,
                                        utc_from_timestamp, utc_now,
                                        write_manifest)
from gslora_det.report.plots import plot_per_class_ap
from gslora_det.report.task_report import build_report, describe_groups
from gslora_det.zero_groups import split_groups

_TIME_KEY = 'gslora_train_time_s'
#: Where ForgetControllerHook keeps its state (gslora_det/controller.py).
CONTROLLER_KEY = 'forget_controller'
#: The task's input checkpoint (path, abs_path, sha256, started_at).
_INPUT_KEY = 'gslora_task_input'


@HOOKS.register_module()
class ForgetTaskHook(Hook):
    """Evaluate before, merge and save after, and report a forgetting task.

    Args:
        report_name (str): Report file in the work dir.
            Defaults to 'forget_report.json'.
        merged_name (str): Merged checkpoint file. Defaults to 'merged.pth'.
        adapter_name (str): Adapter file. Defaults to
            'adapter.safetensors'.
        inactive_rel_threshold (float): A group whose norm ends below this
            fraction of the largest group norm is reported as switched off.
            Defaults to 0.01.
        manifest_name (str): Audit manifest file. Defaults to
            'manifest.json'.
        plot_name (str, optional): Per-class AP plot file; None draws none.
            Defaults to 'per_class_ap.png'.
    """

    priority = 'LOW'

    def __init__(self, report_name: str = 'forget_report.json',
                 merged_name: str = 'merged.pth',
                 adapter_name: str = 'adapter.safetensors',
                 inactive_rel_threshold: float = 0.01,
                 manifest_name: str = MANIFEST_NAME,
                 plot_name: Optional[str] = 'per_class_ap.png') -> None:
        self.report_name = report_name
        self.merged_name = merged_name
        self.adapter_name = adapter_name
        self.inactive_rel_threshold = inactive_rel_threshold
        self.manifest_name = manifest_name
        self.plot_name = plot_name
        self._last_metrics: Optional[Dict] = None
        self._before: Optional[Dict] = None
        self._source: Dict = {}

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train(self, runner) -> None:
        # Rank 0 decides (it hashes the files) and every rank follows: all
        # run the collective val pass or none does.
        plan = [self._plan(runner) if is_main_process() else None]
        broadcast_object_list(plan)
        plan = plan[0]
        if plan.get('error'):
            raise RuntimeError(plan['error'])
        # Checkpointed with the message hub: a resumed run knows its input.
        runner.message_hub.update_info(_INPUT_KEY, plan['input'])
        source = 'cached' if plan['cached'] is not None else 'computed'
        self._source = dict(before_source=source,
                            before_reason=plan['reason'])
        runner.logger.info(f'"before" metrics: {source} ({plan["reason"]})')
        self._before = plan['cached']
        if self._before is None:
            self._before = cache_entry(self._evaluate_before(
                runner, plan['input'], plan['reload']), plan['input'],
                plan['fingerprint'])
            if is_main_process():
                atomic_write_text(osp.join(runner.work_dir, CACHE_NAME),
                                  json.dumps(self._before, indent=1))
        lora = (getattr(self._model(runner), 'method_cfg', None) or {}).get(
            'use_lora', True)
        set_eval_subject(runner, 'the model after forgetting' + (
            ' (LoRA, before merge)' if lora else '') + ', iteration {iter}')
        set_eval_phase(runner, 'after')
        self._last_metrics = None
        self._t0 = time.time()
        self._time_offset = runner.message_hub.get_info(_TIME_KEY, 0.0)

    def _plan(self, runner) -> Dict:
        """Rank 0's :func:`plan_before`; a failure is returned, for every
        rank to raise (raising here would hang the others)."""
        try:
            metric = runner.val_evaluator.metrics[0]
            return plan_before(
                runner.work_dir, runner.cfg, runner.iter,
                runner.message_hub.get_info(_INPUT_KEY),
                metric.class_sets() if hasattr(metric, 'class_sets')
                else None)
        except Exception as err:
            return dict(error=f'deciding on the "before" metrics failed: '
                        f'{err!r}')

    def _evaluate_before(self, runner, record: Dict,
                         reload: Optional[str]) -> Dict:
        """Evaluate the task's input model (loading its weights from
        ``reload`` for the pass, on a resumed run)."""
        sha = record.get('sha256')
        set_eval_subject(
            runner, f'the task\'s input checkpoint {record.get("path")}' +
            (f' (sha256 {sha[:12]}...)' if sha else '') + ', before '
            'forgetting' + (' (its weights reloaded)' if reload else ''))
        set_eval_phase(runner, 'before')
        try:
            with input_weights(self._model(runner), reload):
                return strip_prefix(runner.val_loop.run())
        finally:
            set_eval_phase(runner, 'after')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        runner.message_hub.update_info(
            _TIME_KEY, self._time_offset + time.time() - self._t0)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._last_metrics = metrics
        self._last_metrics_iter = runner.iter

    @torch.no_grad()
    def after_train(self, runner) -> None:
        # (The controller hook, of higher priority, has finished its state.)
        train_time = runner.message_hub.get_info(_TIME_KEY, 0.0)
        # Resumed after the last val, or stopped early (the controller):
        # evaluate the weights training ends with.
        if self._last_metrics is None or \
                getattr(self, '_last_metrics_iter', None) != runner.iter:
            self._last_metrics = runner.val_loop.run()
        after = strip_prefix(self._last_metrics or {})
        model = self._model(runner)
        norms = {k: v.item() for k, v in group_norms(
            model.lora_groups()).items()}
        adapter = lora_state_dict(model)
        check_ranks_agree(adapter)
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters()
                        if p.requires_grad)
        # Refuses NaN/Inf; leaves a layer with an exactly zero update as is.
        skipped = merge_lora(model, safe_merge=True)['skipped']
        if skipped:
            runner.logger.info(f'merge: skipped {len(skipped)} LoRA layers '
                               'with an exactly zero update (base weights '
                               f'bit-identical): {skipped}')
        merged = merged_state_dict(model)
        if is_main_process():
            self._write_outputs(runner, model, adapter, merged, after, norms,
                                trainable, total, train_time)
        # The other ranks wait for rank 0's files, so that whatever starts
        # next when every process has exited (the sequence's next task, on
        # any node) finds them. A no-op without a process group.
        barrier()

    def _write_outputs(self, runner, model, adapter: Dict, merged: Dict,
                       after: Dict, norms: Dict[str, float], trainable: int,
                       total: int, train_time: float) -> None:
        """Write the adapter, merged checkpoint, manifest, plot and
        report (rank 0 only)."""
        work_dir = runner.work_dir
        cfg = runner.cfg
        task = dict(cfg.get('forget_task', {}))
        metric = runner.val_evaluator.metrics[0]
        sets = metric.class_sets() if hasattr(metric, 'class_sets') else {}
        meta = dict(dataset_meta=getattr(runner.train_dataloader.dataset,
                                         'metainfo', None),
                    gslora=dict(task=task, **{k: self._before.get(k) for k in (
                        'input_checkpoint', 'input_checkpoint_sha256')}))
        save_checkpoint_atomic(dict(meta=meta, state_dict=merged),
                               osp.join(work_dir, self.merged_name))
        # After merged.pth: the adapter folder records its hash (unmerge).
        save_task_adapter(work_dir, adapter, model, sets,
                          task_index=task.get('index', 1),
                          base_sha256=self._before.get(
                              'input_checkpoint_sha256'),
                          merged_path=osp.join(work_dir, self.merged_name),
                          legacy_name=self.adapter_name)
        zero = split_groups(adapter, model.lora_cfg['group_pattern'],
                            list(norms))[1]
        report = build_report(task, sets, self._before, after, norms,
                              trainable, total, train_time,
                              self.inactive_rel_threshold, zero)
        report['lora_init'] = dict(
            task_index=getattr(model, 'task_index', None),
            init_a_gain=next((m.init_a_gain for _, m in lora_modules(model)),
                             None))
        report['method'] = getattr(model, 'method', 'gslora')
        report['train_iters'] = runner.iter
        controller = runner.message_hub.get_info(CONTROLLER_KEY)
        if controller:
            report['controller'] = _controller_section(runner, controller)
        report.update(self._source, input_checkpoint_sha256=self._before.get(
            'input_checkpoint_sha256'))
        self._write_manifest(runner, model, task, sets, after)
        if self.plot_name:
            try:
                plot_per_class_ap(report, osp.join(work_dir, self.plot_name))
            except Exception as err:  # a plot never costs the task
                runner.logger.warning(f'per-class AP plot failed: {err!r}')
        if controller:
            try:
                from gslora_det.report.controller_plot import plot_controller
                plot_controller(report['controller'],
                                osp.join(work_dir, 'controller.png'))
            except Exception as err:
                runner.logger.warning(f'controller plot failed: {err!r}')
        try:  # a picture never costs the task either
            from gslora_det.report.before_after import draw_task_before_after
            draw_task_before_after(runner, osp.join(work_dir,
                                                    'before_after.png'),
                                   self._before.get('input_checkpoint'))
        except Exception as err:
            runner.logger.warning(f'before_after.png not drawn: {err!r}')
        atomic_write_text(osp.join(work_dir, self.report_name),
                          json.dumps(report, indent=2))
        runner.logger.info(
            f'Task {report["task"]} done: forget mAP '
            f'{report["mAP_forget_before"]:.3f} -> '
            f'{report["mAP_forget_after"]:.3f}, retain mAP '
            f'{report["mAP_retain_before"]:.3f} -> '
            f'{report["mAP_retain_after"]:.3f}, H-Mean '
            f'{report["h_mean"]:.3f}; {describe_groups(report)}; wrote '
            f'{self.merged_name}, {self.adapter_name}, '
            f'{self.manifest_name}, {self.report_name}')

    def _write_manifest(self, runner, model, task: Dict, sets: Dict,
                        after: Dict) -> None:
        """Write the audit manifest (after the adapter and the merged
        checkpoint, whose hashes it records)."""
        cfg = runner.cfg
        before = self._before or {}
        cache = osp.join(runner.work_dir, CACHE_NAME)
        started = before.get('started_at') or (
            utc_from_timestamp(osp.getmtime(cache)) if osp.isfile(cache)
            else None)
        try:
            config_text = cfg.pretty_text
        except Exception:  # yapf trouble: the dict below is still complete
            config_text = None
        settings = {k: getattr(model, k, None) for k in (
            'method', 'method_cfg', 'lora_cfg', 'forget_cfg',
            'group_lasso_cfg', 'prototype_cfg')}
        settings.update(replay=cfg.get('replay'), forget_task=task,
                        optimizer=cfg.get('optim_wrapper'),
                        train_cfg=cfg.get('train_cfg'))
        manifest = build_manifest(
            task=task.get('index', 1), work_dir=runner.work_dir,
            input_checkpoint=before.get('input_checkpoint'),
            input_abs_path=before.get('input_checkpoint_abs'),
            input_sha256=before.get('input_checkpoint_sha256'),
            adapter_name=self.adapter_name, merged_name=self.merged_name,
            classes=sets, config=cfg.to_dict(), config_text=config_text,
            settings=settings, seed=runner.seed,
            randomness=cfg.get('randomness'), started_at=started,
            finished_at=utc_now(), metrics_before=before,
            metrics_after=after)
        write_manifest(manifest, osp.join(runner.work_dir,
                                          self.manifest_name))


def _controller_section(runner, state: Dict) -> Dict:
    """The report's ``controller``: status, steps, the one-line summary,
    the settings in force, the retained guard's reference mAP, whether the
    retained classes were back within its tolerance at the stop, and the
    trajectory (mAP and fractions in 0-1)."""
    from gslora_det import controller as ctl
    from gslora_det.hooks.forget_controller_hook import SETTINGS_KEY
    cfg = runner.message_hub.get_info(SETTINGS_KEY) or ctl.controller_cfg(
        None)
    return dict(status=state.get('status'), steps=state.get('steps'),
                summary=ctl.describe(cfg, state),
                multiplier=state.get('multiplier'), settings=cfg,
                retain_map_ref=state.get('retain_map_ref'),
                retain_recovered=state.get('retain_recovered', True),
                trajectory=state.get('history', []))
