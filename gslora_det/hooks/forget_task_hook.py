"""End-of-task bookkeeping of a GS-LoRA forgetting task.

* before training: evaluate the input model (LoRA is a no-op then), once:
  the result is cached in the work dir so that a resumed run does not
  evaluate a half-trained model as "before";
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
from mmengine.dist import barrier, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from gslora_det.adapter import save_adapter
from gslora_det.checkpoint import save_checkpoint_atomic, sha256_file
from gslora_det.evaluation.evaluate import strip_prefix
from gslora_det.group_lasso import group_norms, inactive_groups
from gslora_det.inject import lora_state_dict, merged_state_dict
from gslora_det.io_utils import atomic_write_text
from gslora_det.lora import lora_modules
from gslora_det.report.manifest import (MANIFEST_NAME, build_manifest,
                                        utc_from_timestamp, utc_now,
                                        write_manifest)
from gslora_det.report.plots import plot_per_class_ap

_TIME_KEY = 'gslora_train_time_s'


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

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train(self, runner) -> None:
        cache = osp.join(runner.work_dir, 'before_metrics.json')
        if osp.isfile(cache):
            with open(cache) as f:
                self._before = json.load(f)
        else:
            started_at = utc_now()
            runner.logger.info('Evaluating the input model (before '
                               'forgetting)...')
            self._before = strip_prefix(runner.val_loop.run())
            # Remember what this task started from: on a resumed run,
            # `load_from` names the resumed checkpoint, not the input.
            source = runner.cfg.get('load_from')
            self._before['input_checkpoint'] = source
            self._before['started_at'] = started_at
            if is_main_process():
                if source and osp.isfile(source):
                    self._before['input_checkpoint_abs'] = osp.abspath(
                        source)
                    self._before['input_checkpoint_sha256'] = sha256_file(
                        source)
                atomic_write_text(cache, json.dumps(self._before, indent=1))
        self._last_metrics = None
        self._t0 = time.time()
        self._time_offset = runner.message_hub.get_info(_TIME_KEY, 0.0)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        runner.message_hub.update_info(
            _TIME_KEY, self._time_offset + time.time() - self._t0)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._last_metrics = metrics

    @torch.no_grad()
    def after_train(self, runner) -> None:
        train_time = runner.message_hub.get_info(_TIME_KEY, 0.0)
        if self._last_metrics is None:  # resumed after the last val
            self._last_metrics = runner.val_loop.run()
        after = strip_prefix(self._last_metrics or {})
        model = self._model(runner)
        norms = {k: v.item() for k, v in group_norms(
            model.lora_groups()).items()}
        adapter = lora_state_dict(model)
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters()
                        if p.requires_grad)
        for _, module in lora_modules(model):
            module.merge(safe_merge=True)  # refuses NaN/Inf
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
        lora = model.lora_cfg
        save_adapter(adapter, osp.join(work_dir, self.adapter_name),
                     metadata=dict(task=task.get('index', 1),
                                   rank=lora['rank'], alpha=lora['alpha'],
                                   scaling=lora['alpha'] / lora['rank'],
                                   forget_classes=sets.get('forget', []),
                                   group_pattern=lora['group_pattern']))
        meta = dict(dataset_meta=getattr(runner.train_dataloader.dataset,
                                         'metainfo', None),
                    gslora=dict(task=task, input_checkpoint=self._before.get(
                        'input_checkpoint')))
        save_checkpoint_atomic(dict(meta=meta, state_dict=merged),
                               osp.join(work_dir, self.merged_name))
        report = self.build_report(task, sets, self._before, after, norms,
                                   trainable, total, train_time)
        report['method'] = getattr(model, 'method', 'gslora')
        report['train_iters'] = runner.iter
        self._write_manifest(runner, model, task, sets, after)
        if self.plot_name:
            try:
                plot_per_class_ap(report, osp.join(work_dir, self.plot_name))
            except Exception as err:  # a plot never costs the task
                runner.logger.warning(f'per-class AP plot failed: {err!r}')
        atomic_write_text(osp.join(work_dir, self.report_name),
                          json.dumps(report, indent=2))
        runner.logger.info(
            f'Task {report["task"]} done: forget mAP '
            f'{report["mAP_forget_before"]:.3f} -> '
            f'{report["mAP_forget_after"]:.3f}, retain mAP '
            f'{report["mAP_retain_before"]:.3f} -> '
            f'{report["mAP_retain_after"]:.3f}, H-Mean '
            f'{report["h_mean"]:.3f}; groups switched off: '
            f'{report["inactive_groups"] or "none"}; wrote '
            f'{self.merged_name}, {self.adapter_name}, '
            f'{self.manifest_name}, {self.report_name}')

    def _write_manifest(self, runner, model, task: Dict, sets: Dict,
                        after: Dict) -> None:
        """Write the audit manifest (after the adapter and the merged
        checkpoint, whose hashes it records)."""
        cfg = runner.cfg
        before = self._before or {}
        cache = osp.join(runner.work_dir, 'before_metrics.json')
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

    def build_report(self, task: Dict, sets: Dict, before: Dict,
                     after: Dict, norms: Dict[str, float], trainable: int,
                     total: int, train_time: float) -> Dict:
        """The ``forget_report.json`` content (mAPs on the 0-1 scale)."""
        from gslora_det.evaluation import h_mean
        f_before = before.get('mAP_forget')
        f_after = after.get('mAP_forget')
        r_after = after.get('mAP_retain')
        per_class = sorted(k for k in after if k.startswith('AP_'))
        return dict(
            task=task.get('index', 1),
            forget_classes=sets.get('forget', task.get('forget_classes')),
            retained_classes=sets.get('retain'),
            previously_forgotten=sets.get('old', []),
            mAP_forget_before=f_before,
            mAP_forget_after=f_after,
            mAP_retain_before=before.get('mAP_retain'),
            mAP_retain_after=r_after,
            mAP_old_before=before.get('mAP_old'),
            mAP_old_after=after.get('mAP_old'),
            mAP_all_before=before.get('mAP_all'),
            mAP_all_after=after.get('mAP_all'),
            h_mean=(h_mean(f_before, f_after, r_after)
                    if None not in (f_before, f_after, r_after) else None),
            per_class_AP_before={k[3:]: before.get(k) for k in per_class},
            per_class_AP_after={k[3:]: after[k] for k in per_class},
            residual_before={k: v for k, v in before.items()
                             if k.startswith('residual')},
            residual_after={k: v for k, v in after.items()
                            if k.startswith('residual')},
            group_norms=norms,
            inactive_groups=inactive_groups(norms,
                                            self.inactive_rel_threshold),
            trainable_params=trainable,
            total_params=total,
            train_time_s=round(train_time, 2),
        )
