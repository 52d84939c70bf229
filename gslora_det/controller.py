"""The forgetting controller: how hard to push, and when a task is done.

A forgetting request is a constraint, "the forgotten classes are gone",
not a number of steps. The controller treats it as one: a multiplier λ on
the erasing terms (:mod:`gslora_det.forget_terms`) follows dual ascent on
the constraint in log space, and the task stops once the constraint holds.

Every ``check_interval`` steps the model is probed on up to
``probe_images`` *training* images holding the forgotten classes (never the
validation images: they are the test set): first those the forget replay
did not draw, which the model never trains on, so that the verdict is on
the class and not on the images it was erased from; then the replay's own.
That gives the *forget score* (:mod:`gslora_det.evaluation.forget_probe`):

* ``map``: the forgotten classes' COCO mAP on those images;
* ``own``: the fraction of forgotten objects still detected as their own
  class (a box of IoU >= 0.5 scoring >= ``score_thr``);
* ``any``: the same, as any class (relabelling counts as not erased).

The constraint holds when ``map <= target_map``, ``own <= target_own`` and
``any <= target_any``. The guard on the retained classes is the quantity
the bar limits: their mAP on up to ``retain_probe_images`` training images
that hold them and are *not* in the replay set (so the model never trains
on them), measured once before the first step and again at every check.
The retained classes are *harmed* when that mAP has fallen by more than
``retain_map_tolerance`` (absolute, 0-1). Without such images (every
image is replay, or ``retain_probe_images=0``) the guard falls back to the
retained loss (the mean detection loss on the retain images since the
last check), harmed when it exceeds its value at the first check by more
than ``retain_tolerance``. The loss alone is a poor guard: measured on the
built-in sequence it stayed within 10 % while the retained val mAP fell
by 5.4 points. Then at each check:

* unmet, retained not harmed: λ ← min(λ·``raise_factor``,
  ``max_multiplier``);
* unmet, retained harmed: λ is held (the retained classes are paying
  already), but for at most ``max_hold`` checks in a row: after that it
  is raised anyway. The request is the constraint; the retained classes'
  price is what the bar then measures. Without this bound a task whose
  retained loss rises early (chess, task 2) holds λ until the step limit;
* met, retained harmed: λ ← max(λ·``lower_factor``, ``min_multiplier``),
  so that the retained classes recover while the forgotten stay gone;
* met, retained not harmed: one more good check; after ``patience`` good
  checks in a row (and ``min_iters``), the task stops;
* met for ``max_recovery`` checks in a row without ``patience`` good ones
  among the last: the task stops too, the retained classes having had
  that long to recover; the state says ``retain_recovered=False`` and the
  log warns. Without this bound a retained mAP that hovers at the
  tolerance (the built-in sequence, task 3) runs the task to its limit.

At the step limit with the constraint unmet, the status is
``'limit_reached'`` and the sequence stops there, saying so. The state is
a plain dict: the hook keeps it in mmengine's message hub, which every
checkpoint saves, so it survives a resume; every rank computes it from
the same all-gathered numbers.
"""
import copy
from typing import Dict, Optional

#: Controller settings (``forgetting.controller`` in the config).
DEFAULT_CONTROLLER_CFG = dict(
    enable=True,
    check_interval=25,  # steps between probes
    # Training images of the forgotten classes per probe (held-out first).
    probe_images=64,
    score_thr=0.3,  # the residual-detection threshold of the bar
    iou_thr=0.5,  # a detection covers an object at this IoU
    target_map=0.01,  # forgotten mAP on the probe images (0-1)
    target_own=0.0,  # fraction still detected as their own class
    target_any=0.005,  # fraction still detected as any class
    init_multiplier=1.0,
    raise_factor=2.0,
    lower_factor=0.5,
    min_multiplier=0.125,
    max_multiplier=64.0,
    # Held-out training images holding retained classes whose mAP guards
    # them (0: guard on the retained loss instead).
    retain_probe_images=64,
    retain_map_tolerance=0.01,  # absolute fall of that mAP tolerated (0-1)
    # Without those images: relative rise of the retained loss tolerated.
    retain_tolerance=0.1,
    max_hold=2,  # unmet checks in a row that may hold (not raise) λ
    patience=2,  # consecutive good checks (met, not harmed) before stopping
    max_recovery=8,  # consecutive met checks after which the task stops
    min_iters=0,  # no early stop before this step (the hook raises it to
    # group_lasso_cfg.warmup_iters + sparsify_iters when those ask for more)
)


def controller_cfg(overrides: Optional[dict]) -> dict:
    """The settings with ``overrides`` applied.

    Raises:
        ValueError: an unknown key or an out-of-range value, named.
    """
    cfg = copy.deepcopy(DEFAULT_CONTROLLER_CFG)
    unknown = set(overrides or {}) - set(cfg)
    if unknown:
        raise ValueError(f'forgetting.controller: unknown key(s) '
                         f'{sorted(unknown)}; valid keys are {sorted(cfg)}')
    cfg.update(overrides or {})
    if int(cfg['max_hold']) < 0:
        raise ValueError('forgetting.controller.max_hold must be >= 0, '
                         f'got {cfg["max_hold"]}')
    if int(cfg['retain_probe_images']) < 0 or \
            not 0 <= cfg['retain_map_tolerance'] < 1:
        raise ValueError('forgetting.controller: retain_probe_images must '
                         'be >= 0 and retain_map_tolerance in [0, 1), got '
                         f'{cfg["retain_probe_images"]} and '
                         f'{cfg["retain_map_tolerance"]}')
    for key in ('check_interval', 'probe_images', 'patience',
                'max_recovery'):
        if int(cfg[key]) < 1:
            raise ValueError(f'forgetting.controller.{key} must be >= 1, '
                             f'got {cfg[key]}')
    if not (cfg['raise_factor'] > 1 and 0 < cfg['lower_factor'] < 1):
        raise ValueError('forgetting.controller: raise_factor must be > 1 '
                         'and lower_factor in (0, 1)')
    if not 0 < cfg['min_multiplier'] <= cfg['init_multiplier'] <= \
            cfg['max_multiplier']:
        raise ValueError('forgetting.controller: need 0 < min_multiplier '
                         '<= init_multiplier <= max_multiplier')
    return cfg


def initial_state(cfg: dict, retain_map_ref: Optional[float] = None
                  ) -> Dict:
    """A fresh controller state.

    Args:
        cfg (dict): The settings.
        retain_map_ref (float, optional): The retained classes' mAP on the
            held-out probe images before the task (None: no such images;
            the retained loss guards instead).
    """
    return dict(multiplier=float(cfg['init_multiplier']), met_streak=0,
                met_run=0, held=0, retain_ref=None,
                retain_map_ref=retain_map_ref, status='running', history=[])


def retain_harmed(cfg: dict, state: Dict, retain_loss: Optional[float],
                  retain_map: Optional[float]) -> bool:
    """Whether the retained classes are paying too much: their probe mAP
    fell by more than ``retain_map_tolerance`` since before the task, or,
    without a probe mAP, the retained loss rose by more than
    ``retain_tolerance`` since the first check."""
    ref_map = state.get('retain_map_ref')
    if ref_map is not None and retain_map is not None:
        return ref_map - retain_map > cfg['retain_map_tolerance']
    ref = state['retain_ref']
    return (retain_loss is not None and ref is not None and
            retain_loss > ref * (1 + cfg['retain_tolerance']))


def target_met(cfg: dict, score: Dict[str, float]) -> bool:
    """Whether a probe's forget score meets every target."""
    return (score['map'] <= cfg['target_map'] and
            score['own'] <= cfg['target_own'] and
            score['any'] <= cfg['target_any'])


def update(cfg: dict, state: Dict, it: int, score: Dict[str, float],
           retain_loss: Optional[float],
           retain_map: Optional[float] = None) -> Dict:
    """One check: the new state (``state`` is not modified).

    Args:
        cfg (dict): The settings.
        state (dict): The state before this check.
        it (int): Training steps done.
        score (dict): ``map``, ``own``, ``any`` and ``objects`` of the probe.
        retain_loss (float, optional): The mean retained loss since the
            last check (None if no retain image was seen).
        retain_map (float, optional): The retained classes' mAP on the
            held-out probe images now (None: not probed).

    Returns:
        dict: The state after the check; ``status`` is ``'met'`` once the
        task may stop.
    """
    state = copy.deepcopy(state)
    met = target_met(cfg, score)
    if state['retain_ref'] is None and retain_loss is not None:
        state['retain_ref'] = float(retain_loss)
    harmed = retain_harmed(cfg, state, retain_loss, retain_map)
    lam = state['multiplier']
    # ``held``: a state saved before max_hold existed has no counter.
    held = state.get('held', 0)
    hold = False
    if not met:
        hold = harmed and held < cfg['max_hold']
        if not hold:
            lam = min(lam * cfg['raise_factor'], cfg['max_multiplier'])
        state['met_streak'] = 0
    elif harmed:
        lam = max(lam * cfg['lower_factor'], cfg['min_multiplier'])
        state['met_streak'] = 0
    else:
        state['met_streak'] += 1
    # ``met_run``: a state saved before max_recovery existed has none.
    state['met_run'] = state.get('met_run', 0) + 1 if met else 0
    state['held'] = held + 1 if hold else 0
    state['history'].append(dict(
        iter=int(it), multiplier=state['multiplier'], met=met,
        retain_harmed=bool(harmed), held=bool(hold),
        retain_loss=None if retain_loss is None else float(retain_loss),
        retain_map=None if retain_map is None else float(retain_map),
        **{k: float(v) for k, v in score.items()}))
    state['multiplier'] = float(lam)
    if it >= cfg['min_iters']:
        if state['met_streak'] >= cfg['patience']:
            state['status'] = 'met'
        elif state['met_run'] >= cfg['max_recovery']:
            state['status'] = 'met'
            state['retain_recovered'] = False
    return state


def finish(cfg: dict, state: Dict, it: int) -> Dict:
    """The state at the end of training: ``'met'`` if the last check met
    the targets, else ``'limit_reached'``; records the steps used."""
    state = copy.deepcopy(state)
    last = state['history'][-1] if state['history'] else None
    if state['status'] != 'met':
        state['status'] = 'met' if last and last['met'] else 'limit_reached'
    state['steps'] = int(it)
    return state


def describe(cfg: dict, state: Dict) -> str:
    """One line for the log and the sequence's stop message."""
    last = state['history'][-1] if state['history'] else {}
    got = ', '.join(f'{k} {last[k]:.3f} (target <= {cfg["target_" + k]})'
                    for k in ('map', 'own', 'any') if k in last)
    steps = state.get('steps', last.get('iter', 0))
    ref = state.get('retain_map_ref')
    if ref is not None and last.get('retain_map') is not None:
        got += (f'; retained mAP on held-out training images '
                f'{100 * ref:.1f} -> {100 * last["retain_map"]:.1f} % '
                f'(tolerance {100 * cfg["retain_map_tolerance"]:g} points)')
    if state['status'] == 'met':
        line = (f'forgetting target met after {steps} steps: {got}; '
                f'multiplier {state["multiplier"]:.3g}')
        if state.get('retain_recovered') is False:
            line += (f'; the retained classes were NOT back within the '
                     f'tolerance after {cfg["max_recovery"]} checks met '
                     'in a row: stopped there')
        return line
    return (f'forgetting target NOT met after {steps} steps (the step '
            f'limit): {got}; multiplier {state["multiplier"]:.3g}. '
            + _limit_hint(cfg, state))


def _limit_hint(cfg: dict, state: Dict) -> str:
    """What to change after a task that reached its step limit unmet.

    A target that held at some checks and was lost again after λ was
    lowered for the retained classes is a conflict between the request
    and the retained tolerance (measured on chess, task 1), which more
    steps or a larger ``max_multiplier`` do not resolve.
    """
    history = state['history']
    met = sum(1 for h in history if h.get('met'))
    if met:
        return (f'The target held at {met} of {len(history)} checks and was '
                'lost again as the multiplier was lowered for the retained '
                'classes: on this data the request and '
                'forgetting.controller.retain_map_tolerance conflict. Raise '
                'that tolerance to trade retained mAP for the request')
    if state['multiplier'] >= cfg['max_multiplier']:
        return ('The multiplier reached forgetting.controller.'
                'max_multiplier: raise it or train_cfg.max_iters')
    return ('Raise train_cfg.max_iters or forgetting.controller.'
            'max_multiplier, or check that the forget images hold the '
            'classes')

