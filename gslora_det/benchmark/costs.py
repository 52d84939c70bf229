"""What each method costs, measured side by side in one process.

Per-iteration training time and memory are measured here rather than read
off the methods' runs: the runs happen one after another and a shared
machine's load changes between them, while an interleaved measurement on
the same batches gives every method the same conditions. Inference time
compares merged checkpoints with the base model the same way.
"""
import contextlib
import copy
import random
import statistics
import time
from typing import Callable, Dict, Mapping, Sequence

import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from gslora_det.baselines.regularizers import estimate_importance
from gslora_det.checkpoint import load_checkpoint_safely
from gslora_det.hooks.train_cost_hook import (SavedTensorCounter,
                                              memory_breakdown,
                                              model_weights)


def load_train_config(config: str, options: Mapping = None) -> Config:
    """A task config, checked and filled in as ``tools/train.py`` does."""
    from mmdet.utils import register_all_modules
    from gslora_det.config_checks import prepare_config
    register_all_modules(init_default_scope=True)  # as the Runner would
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(options or {}))
    prepare_config(cfg, mode='train')
    return cfg


def build_model(model_cfg: Mapping, checkpoint: str) -> torch.nn.Module:
    """Build a detector and load ``checkpoint`` into it (LoRA keys, absent
    from plain checkpoints, keep their no-op init)."""
    from mmdet.registry import MODELS
    model = MODELS.build(copy.deepcopy(model_cfg))
    model.init_weights()
    state = load_checkpoint_safely(checkpoint)['state_dict']
    model.load_state_dict(state, strict=False)
    return model


def prepare_method_state(model, batches: Sequence[dict]) -> None:
    """Give a baseline the state its loss needs (θ*, Ω, teacher), as
    BaselineStateHook does at the start of a task."""
    mc = getattr(model, 'method_cfg', None) or {}
    if mc.get('regularizer'):
        params = model.trainable_parameters()
        model.reg_anchors = {n: p.detach().clone()
                             for n, p in params.items()}
        model.reg_importance = estimate_importance(
            params, mc['regularizer'], batches[:1],
            lambda b: model.importance_objective(mc['regularizer'], b))
        model.zero_grad(set_to_none=True)
    if mc.get('distill_weight', 0) > 0:
        model.set_teacher(None)
        model.set_teacher(copy.deepcopy(model).requires_grad_(False).eval())


def build_optim_wrapper(model, lr: float, max_norm: float) -> OptimWrapper:
    """AdamW (as the task configs) in the wrapper a run would use: the
    proximal group-lasso wrapper for a model in ``mode='proximal'`` (its
    prox is part of the method's cost), else mmengine's OptimWrapper."""
    from gslora_det.optim import ProximalGroupLassoOptimWrapper
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr,
        weight_decay=1e-4)
    lasso = getattr(model, 'group_lasso_cfg', None) or {}
    cls = (ProximalGroupLassoOptimWrapper if lasso.get('mode') == 'proximal'
           else OptimWrapper)
    wrapper = cls(optimizer=optimizer, clip_grad=dict(max_norm=max_norm)
                  if max_norm else None)
    wrapper.initialize_count_status(model, 0, 1 << 30)  # as the Runner
    return wrapper


def make_step(model, wrapper: OptimWrapper) -> Callable[[dict], None]:
    """One training iteration as mmengine's train loop runs it."""

    def step(batch: dict) -> None:
        data = model.data_preprocessor(batch, True)
        losses = model.loss(data['inputs'], data['data_samples'])
        wrapper.update_params(sum(v for k, v in losses.items()
                                  if 'loss' in k))
    return step


@contextlib.contextmanager
def at_iteration(it: int):
    """Set the message hub's ``iter`` (what the group lasso's warm-up
    reads) for the measurement, then restore it."""
    hub = MessageHub.get_current_instance()
    before = hub.get_info('iter', None)
    hub.update_info('iter', it)
    try:
        yield
    finally:
        hub.update_info('iter', 0 if before is None else before)


#: The iteration the costs are measured at: past every warm-up, so that a
#: group-lasso method pays for its penalty or prox as it does for most of
#: a task.
STEADY_STATE_ITER = 1 << 20


def measure_training(models: Mapping[str, torch.nn.Module],
                     batches: Sequence[dict], lr: float, max_norm: float,
                     rounds: int = 3, steps: int = 2) -> Dict[str, Dict]:
    """Seconds per iteration (median over interleaved rounds) and the
    memory of one iteration, per model.

    Args:
        models (Mapping[str, nn.Module]): name -> model in train mode.
        batches (Sequence[dict]): raw training batches, reused cyclically.
        lr (float): AdamW learning rate (as the task configs).
        max_norm (float): gradient clipping norm (as the task configs).
        rounds (int): interleaved rounds; each times ``steps`` iterations
            of every model in turn.
    """
    with at_iteration(STEADY_STATE_ITER):  # past any warm-up
        return _measure_training(models, batches, lr, max_norm, rounds,
                                 steps)


def _measure_training(models, batches, lr, max_norm, rounds, steps):
    steps_of, optims = {}, {}
    for name, model in models.items():
        wrapper = build_optim_wrapper(model, lr, max_norm)
        optims[name] = wrapper.optimizer
        steps_of[name] = make_step(model, wrapper)
    results = {}
    for name, model in models.items():  # warm-up, then memory
        steps_of[name](batches[0])
        with SavedTensorCounter(model_weights(model)) as counter:
            steps_of[name](batches[1 % len(batches)])
        results[name] = dict(memory=memory_breakdown(
            model, optims[name], counter.total_bytes), times=[])
    order, shuffle = list(models), random.Random(0).shuffle
    for r in range(rounds):
        shuffle(order)  # no method always runs first (or after another)
        for name in order:
            start = time.perf_counter()
            for s in range(steps):
                steps_of[name](batches[(r * steps + s) % len(batches)])
            results[name]['times'].append(
                (time.perf_counter() - start) / steps)
    for res in results.values():
        res['sec_per_iter'] = statistics.median(res.pop('times'))
    return results


@torch.no_grad()
def measure_inference(model_cfg: Mapping, checkpoints: Mapping[str, str],
                      batches: Sequence[dict],
                      rounds: int = 5) -> Dict[str, Dict]:
    """Seconds per image and parameter count of each checkpoint loaded
    into the same (plain) detector, interleaved over ``rounds``."""
    models, results = {}, {}
    for name, path in checkpoints.items():
        model = build_model(model_cfg, path).eval()
        models[name] = model
        results[name] = dict(
            params=sum(p.numel() for p in model.parameters()), times=[])
    images = sum(len(b['inputs']) for b in batches)
    for name, model in models.items():  # warm-up
        model.test_step(batches[0])
    order, shuffle = list(models), random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            model = models[name]
            start = time.perf_counter()
            for batch in batches:
                model.test_step(batch)
            results[name]['times'].append(
                (time.perf_counter() - start) / images)
    for res in results.values():
        res['sec_per_image'] = statistics.median(res.pop('times'))
    return results
