"""A proximal group-lasso step after the optimiser's step.

With ``group_lasso_cfg.mode='penalty'`` (the reference) ``α·Σ_g ||g||`` is in
the loss and AdamW follows its subgradient: no group ever becomes exactly
zero, and Adam's per-parameter scaling rescales the penalty's pull by each
parameter's gradient history. With ``mode='proximal'`` the term leaves the
loss and :class:`ProximalGroupLassoOptimWrapper` applies its prox after
every real optimiser step::

    g <- max(0, 1 - η_g·α / ||g||) · g        for every LoRA group g

which sets a group exactly to zero once the data's pull on it is no larger
than α. What ``g`` holds, η_g and the momentum rule are the model's
``group_lasso_cfg`` keys ``shrink``, ``prox_step`` and ``reset_momentum``
(documented in :data:`gslora_det.detectors.settings.DEFAULT_GROUP_LASSO_CFG`);
the wrapper has no settings of its own, so the model's config is the single
source of truth for both modes.

Step size (``prox_step='adam'``, default): AdamW moves a parameter by
``lr / (sqrt(v̂) + eps)`` per unit of gradient, so the prox of ``α||g||`` in
Adam's metric would shrink by ``α·lr / (sqrt(v̂) + eps)``. A diagonal metric
has no closed-form group prox, so one scalar per group is used, the
root-mean-square of ``v̂`` over the group (ProxGen-style, Yun et al. 2021;
the RMS rather than the mean of ``1/sqrt(v̂)``, which the parameters with
the least gradient would dominate). On the first step of a fresh ``B`` this
zeroes the group exactly when ``||∇_B L|| <= α``: the group lasso's own
optimality condition for ``B = 0``. ``prox_step='lr'`` (η = lr, proximal
SGD) is for SGD; under AdamW it shrinks by ``lr·α`` (about 1e-7 per step
with the reference's numbers), i.e. hardly at all. SoRA thresholds by its
λ alone and leaves open which quantity η is in Adam.

The prox runs in :meth:`step`, which mmengine calls only on the real step of
an accumulation cycle (``accumulative_counts``), after gradient clipping.
"""
import logging
import math
from typing import Dict, List, Optional, Set

import torch
import torch.nn as nn
from mmengine.logging import MessageHub, print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from gslora_det.group_lasso import (PROX_BOUND_ATTR, group_soft_threshold_,
                                    lasso_enabled, lasso_weight)
from gslora_det.lora import lora_modules

#: Message-hub scalar: groups whose shrunk matrices are exactly zero.
ZERO_GROUPS_KEY = 'train/gz'


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP-style wrapper (``.module``), else itself."""
    return model.module if is_model_wrapper(model) else model


def shrunk_groups(model: nn.Module, shrink: str
                  ) -> Dict[str, List[nn.Parameter]]:
    """Group name -> the parameters the prox acts on.

    Args:
        model (nn.Module): Unwrapped; has ``lora_groups()``.
        shrink (str): ``'B'`` (LoRA B matrices only) or ``'AB'``.
    """
    groups = model.lora_groups()
    if shrink == 'AB':
        return {k: list(v) for k, v in groups.items()}
    b_ids = {id(m.lora_B) for _, m in lora_modules(model)}
    return {k: [p for p in v if id(p) in b_ids] for k, v in groups.items()}


@OPTIM_WRAPPERS.register_module()
class ProximalGroupLassoOptimWrapper(OptimWrapper):
    """An :class:`~mmengine.optim.OptimWrapper` that applies the proximal
    group-lasso step of ``group_lasso_cfg.mode='proximal'``.

    Same arguments as ``OptimWrapper``. The Runner's
    ``initialize_count_status(model, ...)`` binds the model (or call
    :meth:`bind_model`); a model in ``'penalty'`` mode gets exactly a plain
    ``OptimWrapper`` step. Logs ``gz`` (the number of groups whose shrunk
    matrices are exactly zero) after every real step.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._model: Optional[nn.Module] = None
        # Groups the last prox left at zero (their momentum was reset).
        self._zeroed: Set[str] = set()

    def initialize_count_status(self, model: nn.Module, init_counts: int,
                                max_counts: int) -> None:
        super().initialize_count_status(model, init_counts, max_counts)
        self.bind_model(model)

    def bind_model(self, model: nn.Module) -> None:
        """Serve ``model`` (DDP-wrapped or not): check it, mark it.

        Raises:
            TypeError: the model has no LoRA groups / group_lasso_cfg.
            ValueError: ``prox_step='adam'`` without an Adam-family
                optimiser, or LoRA parameters the optimiser does not hold.
        """
        module = unwrap(model)
        if not (hasattr(module, 'lora_groups') and
                hasattr(module, 'group_lasso_cfg')):
            raise TypeError(
                f'{type(self).__name__} needs a GS-LoRA model (with '
                f'lora_groups() and group_lasso_cfg), got '
                f'{type(module).__name__}')
        cfg = module.group_lasso_cfg
        if cfg['mode'] != 'proximal':
            print_log(f"{type(self).__name__}: group_lasso_cfg.mode is "
                      f"{cfg['mode']!r}, so the proximal step is off and "
                      'this is a plain OptimWrapper step.', logger='current',
                      level=logging.WARNING)
        else:
            self._check_optimizer(module, cfg)
        setattr(module, PROX_BOUND_ATTR, True)
        self._model = module

    def _check_optimizer(self, module: nn.Module, cfg: dict) -> None:
        held = {id(p) for g in self.optimizer.param_groups
                for p in g['params']}
        missing = [k for k, ps in module.lora_groups().items()
                   if any(id(p) not in held for p in ps)]
        if missing:
            raise ValueError(f'the optimiser does not hold the LoRA '
                             f'parameters of groups {missing}')
        if cfg['prox_step'] == 'adam' and not all(
                'betas' in g and 'eps' in g
                for g in self.optimizer.param_groups):
            raise ValueError(
                "group_lasso_cfg.prox_step='adam' needs an Adam-family "
                f'optimiser, got {type(self.optimizer).__name__}; set '
                "group_lasso_cfg.prox_step='lr' for SGD-type optimisers.")

    def step(self, **kwargs) -> None:
        """Clip, optimiser step (``OptimWrapper.step``), then the prox."""
        if self._model is None:
            raise RuntimeError(
                f'{type(self).__name__}.step before a model was bound: '
                'call initialize_count_status(model, ...) (the Runner '
                'does) or bind_model(model) first.')
        super().step(**kwargs)
        self._prox()

    @torch.no_grad()
    def _prox(self) -> None:
        module = self._model
        cfg = module.group_lasso_cfg
        hub = MessageHub.get_current_instance()
        enabled = lasso_enabled(module)
        lam = (lasso_weight(cfg, enabled, hub.get_info('iter', 0))
               if cfg['mode'] == 'proximal' else 0.0)
        zero, zeroed = 0, set()
        for name, params in shrunk_groups(module, cfg['shrink']).items():
            if not params:
                continue
            if lam > 0:
                eta = self.step_size(params, cfg['prox_step'])
                dead = group_soft_threshold_(params, eta * lam)
                if dead:
                    zeroed.add(name)
                # Reset once, when the group dies: while it stays at zero
                # the momentum gathers fresh gradients only (resetting at
                # every step would ask ~1/(1 - β1) times α to come back).
                if (dead and cfg['reset_momentum']
                        and name not in self._zeroed):
                    self._reset_momentum(params)
            else:
                dead = not any(p.any() for p in params)
            zero += int(dead)
        if lam > 0:
            self._zeroed = zeroed
        hub.update_scalar(ZERO_GROUPS_KEY, zero)

    def _param_groups(self) -> Dict[int, dict]:
        # Rebuilt per step: load_state_dict replaces the group dicts.
        return {id(p): g for g in self.optimizer.param_groups
                for p in g['params']}

    def step_size(self, params: List[nn.Parameter], rule: str) -> float:
        """η of one group (see the module docstring).

        Args:
            params (list[Parameter]): The group's shrunk parameters.
            rule (str): ``'adam'`` or ``'lr'``.

        Returns:
            float: ``lr`` (numel-weighted over the group) for ``'lr'``;
            ``lr / (sqrt(mean v̂) + eps)`` for ``'adam'``, where a
            parameter without optimiser state (never had a gradient)
            counts as ``v̂ = 0``.
        """
        owner = self._param_groups()
        numel = sum(p.numel() for p in params)
        lr = sum(owner[id(p)]['lr'] * p.numel() for p in params) / numel
        if rule == 'lr':
            return lr
        sq = 0.0
        for p in params:
            group, state = owner[id(p)], self.optimizer.state.get(p, {})
            key = 'max_exp_avg_sq' if group.get('amsgrad') else 'exp_avg_sq'
            if state and key not in state:  # e.g. Adamax: no v to read
                raise ValueError(
                    f"prox_step='adam' found no {key!r} in the state of "
                    f'{type(self.optimizer).__name__}; use an Adam-family '
                    "optimiser or group_lasso_cfg.prox_step='lr'.")
            if key in state:
                correction = 1.0 - group['betas'][1]**float(state['step'])
                sq += float(state[key].sum()) / correction
        return lr / (math.sqrt(sq / numel) + owner[id(params[0])]['eps'])

    def _reset_momentum(self, params: List[nn.Parameter]) -> None:
        for p in params:
            state = self.optimizer.state.get(p, {})
            if 'exp_avg' in state:
                state['exp_avg'].zero_()
