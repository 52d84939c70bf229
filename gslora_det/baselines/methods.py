"""Forgetting methods as presets of one detector: GS-LoRA and its baselines.

Every method runs through the same task configs, data split, batch
(retain + forget images in one step) and schedule; only the model's
``method`` (and optional ``method_cfg`` overrides) differs::

    python tools/train.py configs/shapes/gslora_..._task1_shapes.py \\
        --cfg-options model.method=ewc model.method_cfg.reg_lambda=5

Precedence: :data:`DEFAULT_METHOD_CFG` < the preset of ``method`` <
``method_cfg`` from the config. Constants follow the reference's baselines
(``../shared/method.md`` §6) where it has them.

Keys of ``method_cfg``:

* ``use_lora``: put LoRA on the FFN linears and train only LoRA (True), or
  train the detector's own weights (False: "full fine-tuning").
* ``group_lasso``: add GS-LoRA's group-sparse penalty (LoRA only).
* ``frozen``: full-match regexes of parameter names kept frozen when
  ``use_lora`` is False (the reference freezes the heads of L2/EWC/MAS/DER).
* ``forget_loss``: what the forget images contribute —
  ``'bounded'``: GS-LoRA's ``ReLU(BND − L_cls) + L_bbox + L_iou``;
  ``'ascent'``: the negated detection loss ``−(L_cls + L_bbox + L_iou)``,
  unbounded (gradient ascent); ``'relabel'``: the forgotten objects become
  background (the reference relabels them to an unused class) and the
  images are ordinary training data; ``'none'``: forget images are ignored.
* ``forget_weight``: weight of that term; None takes ``forget_cfg.beta``.
* ``retain_weight``: weight of the detection loss on retain images.
* ``regularizer``: None, ``'l2'``, ``'ewc'`` or ``'mas'``: the penalty
  ``reg_lambda · Σ Ω (θ − θ*)²`` towards the task's input weights θ*, with
  Ω = 1 (L2), the mean squared gradient of the detection loss on retain
  images (EWC's diagonal Fisher) or the mean ``|∇ mean(logits²)|`` (MAS),
  estimated on ``importance_batches`` retain batches before the task.
* ``distill_weight``: DER's ``λ ‖logits_s − logits_t‖²`` on retain images,
  the teacher being the task's input model (0: off).
"""
import copy
from typing import Dict, Optional

DEFAULT_METHOD_CFG = dict(
    use_lora=True,
    group_lasso=True,
    frozen=[],
    forget_loss='bounded',
    forget_weight=None,
    retain_weight=1.0,
    regularizer=None,
    reg_lambda=0.0,
    importance_batches=10,
    distill_weight=0.0,
)

#: The reference freezes the detection heads for its regularisation and
#: distillation baselines.
_HEADS = [r'bbox_head\..*']

METHOD_PRESETS: Dict[str, dict] = {
    # GS-LoRA: LoRA + bounded forget loss + group lasso.
    'gslora': dict(),
    # Plain LoRA on the same targets, no group sparsity (α = 0).
    'lora': dict(group_lasso=False),
    # The GS-LoRA objective on the full model, no LoRA.
    'full_ft_gslora_loss': dict(use_lora=False, group_lasso=False),
    # Rehearsal fine-tuning: full fine-tune on retained data only.
    'rehearsal_ft': dict(use_lora=False, group_lasso=False,
                         forget_loss='none'),
    # Gradient ascent on the forget data, with the same replay.
    'gradient_ascent': dict(use_lora=False, group_lasso=False,
                            forget_loss='ascent'),
    # Rehearsal + relabelled forget data + quadratic penalties.
    'l2': dict(use_lora=False, group_lasso=False, frozen=_HEADS,
               forget_loss='relabel', forget_weight=1.0, regularizer='l2',
               reg_lambda=0.01),
    'ewc': dict(use_lora=False, group_lasso=False, frozen=_HEADS,
                forget_loss='relabel', forget_weight=1.0, regularizer='ewc',
                reg_lambda=10.0),
    'mas': dict(use_lora=False, group_lasso=False, frozen=_HEADS,
                forget_loss='relabel', forget_weight=1.0, regularizer='mas',
                reg_lambda=0.1),
    # DER++: relabelled forget data + λ logit distillation on retain images
    # + λ' · L_det(retain) (reference: λ = 0.001, λ' = 0.1).
    'derpp': dict(use_lora=False, group_lasso=False, frozen=_HEADS,
                  forget_loss='relabel', forget_weight=1.0,
                  retain_weight=0.1, distill_weight=0.001),
}

FORGET_LOSSES = ('bounded', 'ascent', 'relabel', 'none')
REGULARIZERS = (None, 'l2', 'ewc', 'mas')


def resolve_method_cfg(method: str,
                       overrides: Optional[dict] = None) -> dict:
    """The full ``method_cfg`` of ``method`` with ``overrides`` applied.

    Raises:
        ValueError: unknown method or key, or an invalid value; the message
            lists the valid choices.
    """
    if method not in METHOD_PRESETS:
        raise ValueError(f'unknown forgetting method {method!r}; valid '
                         f'methods are {sorted(METHOD_PRESETS)}')
    cfg = copy.deepcopy(DEFAULT_METHOD_CFG)
    cfg.update(copy.deepcopy(METHOD_PRESETS[method]))
    unknown = set(overrides or {}) - set(DEFAULT_METHOD_CFG)
    if unknown:
        raise ValueError(f'method_cfg: unknown key(s) {sorted(unknown)}; '
                         f'valid keys are {sorted(DEFAULT_METHOD_CFG)}')
    cfg.update(overrides or {})
    if cfg['forget_loss'] not in FORGET_LOSSES:
        raise ValueError(f'method_cfg.forget_loss must be one of '
                         f'{FORGET_LOSSES}, got {cfg["forget_loss"]!r}')
    if cfg['regularizer'] not in REGULARIZERS:
        raise ValueError(f'method_cfg.regularizer must be one of '
                         f'{REGULARIZERS}, got {cfg["regularizer"]!r}')
    for key in ('retain_weight', 'reg_lambda', 'distill_weight'):
        if cfg[key] < 0:
            raise ValueError(f'method_cfg.{key} must be >= 0, got '
                             f'{cfg[key]}')
    if cfg['group_lasso'] and not cfg['use_lora']:
        raise ValueError('method_cfg.group_lasso needs use_lora=True: the '
                         'group-sparse penalty acts on LoRA groups')
    if cfg['regularizer'] and cfg['importance_batches'] < 1:
        raise ValueError('method_cfg.importance_batches must be >= 1 for '
                         f'regularizer {cfg["regularizer"]!r}')
    return cfg
