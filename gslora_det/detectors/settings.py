"""Settings of the GS-LoRA forgetting detectors: defaults and checks."""
import copy
import math
from typing import Optional

from gslora_det.inject import DEFAULT_GROUP_PATTERN, DEFAULT_TARGETS

#: LoRA settings; the defaults are the GS-LoRA reference's.
DEFAULT_LORA_CFG = dict(
    targets=DEFAULT_TARGETS,
    group_pattern=DEFAULT_GROUP_PATTERN,
    rank=8,
    alpha=1.0,  # scaling = alpha / rank = 1/8
    init_a_gain=math.sqrt(5),  # kaiming-uniform `a` of A on task 1
    init_a_gain_later=math.sqrt(50),  # ... and on later tasks (smaller A)
)
#: Forgetting loss settings; the defaults are the reference's COCO values.
DEFAULT_FORGET_CFG = dict(
    beta=0.15,  # weight of the forget loss (reference: 0.015-0.6 per task)
    bound=15.0,  # BND: the negated classification loss stops at this value
    use_aux_loss=False,  # the reference turns auxiliary decoder losses off
    # Weight of a "no object" term on forget images, per forgotten object
    # (0: the reference's loss): BCE of every class score of the queries
    # that cover a forgotten object, towards 0. Erases where the negated
    # loss alone relabels.
    background_weight=0.0,
    # A query covers a forgotten object if matched to it or if its box
    # overlaps it with at least this IoU (0.5: what makes a detection count
    # for mAP and for residual detection).
    background_iou=0.5,
    # Term `outrank` (gslora_det/forget_terms.py): its weight, and the
    # margin (logits) below the image's k-th largest logit that the
    # forgotten classes' logits of the covering queries are pushed to.
    outrank_weight=1.0,
    outrank_margin=1.0,
    # The forget images' terms, by name (gslora_det/forget_terms.py), e.g.
    # ('kept', 'background'): erase, keeping retained objects. None: the
    # terms `method_cfg.forget_loss` has always meant (the reference's
    # bounded loss; `background` added when background_weight > 0).
    terms=None,
)
#: Group-sparse (group-lasso) settings. ``mode='proximal'`` needs
#: ``optim_wrapper.type='ProximalGroupLassoOptimWrapper'``
#: (:mod:`gslora_det.optim.proximal`); the keys marked "Proximal" are
#: unused in penalty mode.
DEFAULT_GROUP_LASSO_CFG = dict(
    alpha=3e-4,  # weight of L_structure (reference, detection); λ of prox
    # α is 0 before this iteration (the reference's face scripts: 20
    # epochs). Proximal mode needs one: B = 0 at init, so at step 1 a
    # group lives only if its gradient already exceeds α, and the groups
    # that die then never learn (measured on the built-in sequence at
    # α = 3e-2: 3 of 6 dead at step 1, and forgetting with the other 3
    # took the whole step budget, missing task 3).
    warmup_iters=0,
    # With α > 0: the forgetting controller does not stop the task before
    # step warmup_iters + sparsify_iters. A group dies only once the data's
    # pull on it falls below α, i.e. mostly after the forget target first
    # holds; the controller's early stop at that point would leave the
    # group lasso no time to select (measured on the built-in sequence).
    sparsify_iters=0,
    # 'penalty': α·Σ‖g‖ is added to the loss and the optimiser follows its
    # gradient (the reference; groups get small, never exactly 0).
    # 'proximal': after each real optimiser step every group is
    # soft-thresholded, g <- max(0, 1 - η·α/‖g‖)·g, so groups reach exact 0.
    mode='penalty',
    # Proximal: what the prox acts on. 'B': the LoRA B matrices of a group
    # only (ΔW = s·B·A is 0 iff B is; A keeps carrying the data's gradient
    # to a zeroed B, so a group can come back only if the data asks for
    # it). 'AB': the exact prox of the reference's Σ‖(A, B)‖; a group at
    # A = B = 0 has no gradient left and never comes back.
    shrink='B',
    # Proximal: η of the threshold η·α. 'adam': per group,
    # lr / (sqrt(mean of Adam's bias-corrected v) + eps), the step Adam
    # takes per unit of gradient there (ProxGen-style), so that a group
    # dies when its data gradient is no larger than α (the lasso's
    # optimality condition) and the same α shrinks about as much per step
    # as the penalty does under Adam. 'lr': η = lr (proximal SGD; under
    # Adam, α would need to be orders of magnitude larger).
    prox_step='adam',
    # Proximal: when the prox zeroes a group, zero Adam's first moment of
    # what it shrinks (once), so that stale momentum does not carry the
    # group back out; while it stays at 0 the momentum gathers fresh data
    # gradients only, and it comes back once their average outweighs α.
    reset_momentum=True,
)
#: Allowed values of the choice keys of DEFAULT_GROUP_LASSO_CFG.
GROUP_LASSO_CHOICES = dict(mode=('penalty', 'proximal'), shrink=('B', 'AB'),
                           prox_step=('adam', 'lr'),
                           reset_momentum=(True, False))
#: GS-LoRA++ prototype term (off by default, as in the CVPR method).
DEFAULT_PROTOTYPE_CFG = dict(
    enable=False,
    bound=18.0,  # BND_pro
    weight_forget=0.005,  # w_f
    weight_retain=0.0,  # w_r
)


def merged_cfg(defaults: dict, override: Optional[dict], what: str) -> dict:
    """``defaults`` updated with ``override``; unknown keys are an error."""
    cfg = copy.deepcopy(defaults)
    unknown = set(override or {}) - set(defaults)
    if unknown:
        raise ValueError(f'{what}: unknown key(s) {sorted(unknown)}; valid '
                         f'keys are {sorted(defaults)}')
    cfg.update(override or {})
    return cfg


def short_group_name(name: str) -> str:
    """'encoder.layers.3' -> 'enc3' (keeps log lines short)."""
    return (name.replace('encoder.layers.', 'enc')
            .replace('decoder.layers.', 'dec'))


def check_constants(lora_cfg: dict, forget_cfg: dict,
                    group_lasso_cfg: dict) -> None:
    """Refuse negative weights and bounds and a non-positive LoRA rank."""
    checks = [('forget_cfg.beta', forget_cfg['beta']),
              ('forget_cfg.background_weight',
               forget_cfg['background_weight']),
              ('forget_cfg.bound', forget_cfg['bound']),
              ('forget_cfg.background_iou', forget_cfg['background_iou']),
              ('forget_cfg.outrank_weight', forget_cfg['outrank_weight']),
              ('group_lasso_cfg.alpha', group_lasso_cfg['alpha']),
              ('group_lasso_cfg.warmup_iters',
               group_lasso_cfg['warmup_iters']),
              ('group_lasso_cfg.sparsify_iters',
               group_lasso_cfg['sparsify_iters'])]
    for name, value in checks:
        if value < 0:
            raise ValueError(f'{name} must be >= 0, got {value}')
    from gslora_det.forget_terms import check_terms
    check_terms(forget_cfg['terms'])
    if lora_cfg['rank'] <= 0:
        raise ValueError('lora_cfg.rank must be a positive integer, got '
                         f'{lora_cfg["rank"]}')
    check_group_lasso_choices(group_lasso_cfg)


def check_group_lasso_choices(cfg: dict) -> None:
    """Refuse a value of a choice key outside :data:`GROUP_LASSO_CHOICES`.

    Args:
        cfg (dict): A merged ``group_lasso_cfg``.

    Raises:
        ValueError: naming the key, the value and the allowed values.
    """
    for key, allowed in GROUP_LASSO_CHOICES.items():
        # `in` alone would accept 1 for True and 0 for False.
        if not any(type(cfg[key]) is type(a) and cfg[key] == a
                   for a in allowed):
            raise ValueError(f'group_lasso_cfg.{key} must be one of '
                             f'{list(allowed)}, got {cfg[key]!r}')
