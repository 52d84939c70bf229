"""Run the forgetting controller during training (one job: λ and the stop).

Before the first step: measure the retained classes' mAP on held-out
training images (:func:`gslora_det.evaluation.forget_probe.probe_class_map`;
images of the retain role that are not replay). Every ``check_interval``
steps: probe training images of the forgotten classes, held-out ones first
(:func:`~gslora_det.evaluation.forget_probe.probe_forget_score`), and the
held-out retain images again, reduce the retained loss seen since the last
check over the ranks, update the controller (:mod:`gslora_det.controller`),
set the model's ``forget_multiplier``, and stop the loop once the target
holds. The state lives in the message hub (``forget_controller``), which
checkpoints save and a resume restores; the task report copies it from
there.
"""
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet.registry import HOOKS

from gslora_det import controller as ctl
from gslora_det.group_lasso import earliest_stop, lasso_enabled

STATE_KEY = 'forget_controller'
#: The settings in force (the hook's arguments with the config's on top).
SETTINGS_KEY = 'forget_controller_settings'
#: The retained loss: the final decoder layer's terms on retain images.
RETAIN_KEYS = ('r.loss_cls', 'r.loss_bbox', 'r.loss_iou')


def _split(dataset, role: str):
    """The ``role`` split inside the training dataset (a ConcatDataset of
    the two roles)."""
    for part in getattr(dataset, 'datasets', [dataset]):
        if getattr(part, 'role', None) == role:
            return part
    raise RuntimeError(f'the training dataset has no {role} split (role='
                       f'{role!r}): the controller probes its images')


def _held_out(split, n: int, seed: int = 0) -> List[dict]:
    """Up to ``n`` held-out training images of the split's role (a seeded
    draw: the same on every rank and after a resume); none when the split
    cannot tell (a ``ForgetRetainCocoDataset`` has no inner dataset) or
    holds every such image."""
    if n <= 0 or not hasattr(split, 'held_out_infos'):
        return []
    return split.held_out_infos(n, seed)


def _forget_probe_infos(split, n: int) -> Tuple[List[dict], int]:
    """Up to ``n`` training images holding the forgotten classes: held-out
    ones first, then the forget replay's own (its first ones); and how
    many are held out.

    Held out first because the request is to erase the *class*: measured on
    the 8 replay images of a small forget set (chess, task 1), the target
    held while 5 % mAP and 2 of 16 objects were left on val.
    """
    held = _held_out(split, n)
    drawn = [split.get_data_info(i)
             for i in range(min(len(split), n - len(held)))]
    return held + drawn, len(held)


def _test_pipeline(cfg) -> List[dict]:
    for key in ('val_dataloader', 'test_dataloader'):
        ds = (cfg.get(key) or {}).get('dataset') or {}
        while 'pipeline' not in ds and isinstance(ds.get('dataset'), dict):
            ds = ds['dataset']
        if ds.get('pipeline'):
            return list(ds['pipeline'])
    raise RuntimeError('no val/test pipeline in the config: the controller '
                       'probes the training forget images with it')


@HOOKS.register_module()
class ForgetControllerHook(Hook):
    """Decide how hard to push and when the forgetting task is done.

    Args:
        **controller: Settings of
            :data:`gslora_det.controller.DEFAULT_CONTROLLER_CFG`; the
            config's ``forgetting.controller`` overrides these.
    """

    priority = 'NORMAL'  # before ForgetTaskHook (LOW) writes the report

    def __init__(self, **controller) -> None:
        self._overrides = controller
        self.cfg: Dict = {}
        self.state: Optional[Dict] = None
        self._sum, self._count = 0.0, 0

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train(self, runner) -> None:
        overrides = dict(self._overrides)
        overrides.update((runner.cfg.get('forgetting') or {}).get(
            'controller') or {})
        self.cfg = ctl.controller_cfg(overrides)
        self._sparsify_floor(runner)
        runner.message_hub.update_info(SETTINGS_KEY, self.cfg)
        dataset = runner.train_dataloader.dataset
        split = _split(dataset, 'forget')
        # The same images on every check, every rank and after a resume.
        self._infos, held = _forget_probe_infos(
            split, int(self.cfg['probe_images']))
        self._labels = list(split.forgotten_labels())
        self._pipeline = _test_pipeline(runner.cfg)
        retain = _split(dataset, 'retain')
        self._retain_infos = _held_out(
            retain, int(self.cfg['retain_probe_images']))
        self._retain_labels = list(retain.role_labels())
        saved = runner.message_hub.get_info(STATE_KEY)
        if saved:
            self.state = saved
        elif self.cfg['enable']:
            # Before any step: the LoRA is a no-op, so this is the input
            # model's retained mAP, the reference of the guard.
            self.state = ctl.initial_state(
                self.cfg, self._retain_map(runner))
        else:
            self.state = ctl.initial_state(self.cfg)
        self._apply(runner)
        if self.cfg['enable']:
            ref = self.state.get('retain_map_ref')
            guard = (f'retained mAP {100 * ref:.1f} % on '
                     f'{len(self._retain_infos)} held-out training images, '
                     f'tolerance {100 * self.cfg["retain_map_tolerance"]:g}'
                     ' points' if ref is not None else
                     f'retained loss, tolerance '
                     f'{100 * self.cfg["retain_tolerance"]:g} % (no '
                     'held-out retain images)')
            runner.logger.info(
                f'forgetting controller: probing {len(self._infos)} training '
                f'images of the forgotten classes ({held} held out, the rest '
                f'replay) every {self.cfg["check_interval"]} steps; targets '
                f'mAP <= {self.cfg["target_map"]}, own <= '
                f'{self.cfg["target_own"]}, any <= {self.cfg["target_any"]} '
                f'at score {self.cfg["score_thr"]}; guard: {guard}; '
                f'multiplier {self.state["multiplier"]:.3g}')

    def _sparsify_floor(self, runner) -> None:
        """Raise ``min_iters`` to the group lasso's earliest stop
        (:func:`gslora_det.group_lasso.earliest_stop`), saying so."""
        model = self._model(runner)
        cfg = getattr(model, 'group_lasso_cfg', None)
        if cfg is None or 'sparsify_iters' not in cfg:
            return
        enabled = lasso_enabled(model)
        floor = earliest_stop(cfg, enabled)
        if floor <= self.cfg['min_iters']:
            return
        self.cfg['min_iters'] = floor
        limit = getattr(runner, 'max_iters', None)
        runner.logger.info(
            f'forgetting controller: no early stop before step {floor} '
            f"(group_lasso_cfg.warmup_iters {cfg['warmup_iters']} + "
            f"sparsify_iters {cfg['sparsify_iters']}), so that the group "
            'lasso has time to select'
            + ('' if limit is None or floor < limit else
               f'; this is at or beyond the step limit {limit}: the task '
               'will run to the limit'))

    def _apply(self, runner) -> None:
        self._model(runner).forget_multiplier = self.state['multiplier'] \
            if self.cfg['enable'] else 1.0

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch=None, outputs=None) -> None:
        if not self.cfg['enable']:
            return
        if outputs and all(k in outputs for k in RETAIN_KEYS):
            self._sum += sum(float(torch.as_tensor(outputs[k]).detach())
                             for k in RETAIN_KEYS)
            self._count += 1
        it = runner.iter + 1  # steps done (runner.iter counts from 0)
        if it % self.cfg['check_interval']:
            return
        self._check(runner, it)
        if self.state['status'] == 'met':
            runner.train_loop.stop_training = True

    def _retain_loss(self) -> Optional[float]:
        """The mean retained loss since the last check, over all ranks."""
        t = torch.tensor([self._sum, float(self._count)],
                         dtype=torch.float64)
        all_reduce(t)  # sum; a no-op without a process group
        self._sum, self._count = 0.0, 0
        return float(t[0] / t[1]) if t[1] > 0 else None

    def _retain_map(self, runner) -> Optional[float]:
        """The retained classes' mAP on the held-out images (None without
        them)."""
        if not self._retain_infos:
            return None
        return probe_retain_map_for(runner, self)

    def _check(self, runner, it: int) -> None:
        score = probe_forget_score_for(runner, self)
        self.state = ctl.update(self.cfg, self.state, it, score,
                                self._retain_loss(), self._retain_map(runner))
        runner.message_hub.update_info(STATE_KEY, self.state)
        self._apply(runner)
        last = self.state['history'][-1]
        runner.logger.info(
            f'forgetting controller, step {it}: forget mAP '
            f'{100 * last["map"]:.1f} %, own {100 * last["own"]:.1f} %, any '
            f'{100 * last["any"]:.1f} % of {int(last["objects"])} training '
            f'forget objects; retained loss {last["retain_loss"] or 0:.3f}'
            + ('' if last.get('retain_map') is None else
               f', retained mAP {100 * last["retain_map"]:.1f} % (before '
               f'{100 * self.state["retain_map_ref"]:.1f} %)') + '; '
            f'target {"met" if last["met"] else "unmet"} -> multiplier '
            f'{self.state["multiplier"]:.3g}')

    def after_train(self, runner) -> None:
        if not self.cfg['enable'] or self.state is None:
            return
        history = self.state['history']
        if not history or history[-1]['iter'] != runner.iter:
            self._check(runner, runner.iter)  # the state the model ends in
        self.state = ctl.finish(self.cfg, self.state, runner.iter)
        runner.message_hub.update_info(STATE_KEY, self.state)
        line = ctl.describe(self.cfg, self.state)
        clean = (self.state['status'] == 'met' and
                 self.state.get('retain_recovered') is not False)
        (runner.logger.info if clean else runner.logger.warning)(line)


def probe_forget_score_for(runner, hook: ForgetControllerHook) -> Dict:
    """The probe on the hook's images (a function, so tests can stub it)."""
    from gslora_det.evaluation.forget_probe import probe_forget_score
    return probe_forget_score(runner.model, hook._infos, hook._labels,
                              hook._pipeline, hook.cfg['score_thr'],
                              hook.cfg['iou_thr'])


def probe_retain_map_for(runner, hook: ForgetControllerHook) -> float:
    """The retained mAP on the hook's held-out images (a function, so
    tests can stub it)."""
    from gslora_det.evaluation.forget_probe import probe_class_map
    return probe_class_map(runner.model, hook._retain_infos,
                           hook._retain_labels, hook._pipeline)
