"""Prepare the baselines' state before a task: θ*, Ω and DER's teacher.

The L2/EWC/MAS penalties pull the weights towards those the task started
from (θ*) with a per-weight importance Ω estimated on retained data; DER
distils from the task's input model. Both must describe the *input* model,
so on a resumed run they cannot be recomputed from the resumed weights:
the state is saved into every checkpoint and restored from it.

For GS-LoRA and the baselines that need neither, this hook does nothing.
"""
import copy
from typing import Dict, List, Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from gslora_det.baselines.regularizers import estimate_importance

CHECKPOINT_KEY = 'gslora_baseline_state'


def first_train_batches(cfg, count: int, seed: int = 0) -> List[dict]:
    """The first ``count`` raw batches of ``cfg``'s training data, from a
    fresh single-process loader (the Runner's own loader keeps a persistent
    iterator that must not be disturbed)."""
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.update(num_workers=0, persistent_workers=False)
    loader = Runner.build_dataloader(loader_cfg, seed=seed)
    return [batch for _, batch in zip(range(count), loader)]


@HOOKS.register_module()
class BaselineStateHook(Hook):
    """Sets ``reg_anchors``/``reg_importance`` and the teacher on the model.

    Importance batches come from :func:`first_train_batches`; only their
    retain images are used.
    """

    priority = 'NORMAL'  # before ForgetTaskHook (LOW) starts its clock

    def __init__(self) -> None:
        self._state: Optional[Dict] = None

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    @staticmethod
    def _needs(model) -> tuple:
        mc = getattr(model, 'method_cfg', None) or {}
        return bool(mc.get('regularizer')), mc.get('distill_weight', 0) > 0

    def after_load_checkpoint(self, runner, checkpoint: Dict) -> None:
        if CHECKPOINT_KEY in checkpoint:  # a resumed task
            self._state = checkpoint[CHECKPOINT_KEY]

    def before_save_checkpoint(self, runner, checkpoint: Dict) -> None:
        if self._state is not None:
            checkpoint[CHECKPOINT_KEY] = self._state

    def before_train(self, runner) -> None:
        model = self._model(runner)
        need_reg, need_teacher = self._needs(model)
        if not (need_reg or need_teacher):
            return
        if self._state is None:
            self._state = dict(input_state={
                k: v.detach().clone() for k, v in model.state_dict().items()})
            if need_reg:
                self._state['importance'] = self._estimate(runner, model)
        else:
            runner.logger.info('Baseline state (θ*, Ω) restored from the '
                               'resumed checkpoint')
        input_state = self._state['input_state']
        if need_reg:
            model.reg_importance = self._state['importance']
            model.reg_anchors = {n: input_state[n].to(p.device)
                                 for n, p in
                                 model.trainable_parameters().items()}
        if need_teacher:
            model.set_teacher(None)
            teacher = copy.deepcopy(model)
            teacher.load_state_dict(input_state)
            teacher.requires_grad_(False).eval()
            model.set_teacher(teacher)

    @staticmethod
    def _estimate(runner, model) -> Dict[str, torch.Tensor]:
        mc = model.method_cfg
        kind = mc['regularizer']
        limit = mc['importance_batches']
        batches = first_train_batches(runner.cfg, limit, runner.seed)
        runner.logger.info(f'Estimating {kind.upper()} importance on '
                           f'{limit} batches of retained data...')
        was_training = model.training
        model.train()  # BatchNorms stay in eval (the detector's train())
        importance = estimate_importance(
            model.trainable_parameters(), kind, batches,
            lambda batch: model.importance_objective(kind, batch))
        model.train(was_training)
        model.zero_grad(set_to_none=True)
        if get_world_size() > 1:  # every rank must use the same Ω
            for value in importance.values():
                all_reduce(value, op='mean')
        return importance
