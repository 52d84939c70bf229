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
)
#: Group-sparse penalty settings.
DEFAULT_GROUP_LASSO_CFG = dict(
    alpha=3e-4,  # weight of L_structure (reference, detection)
    warmup_iters=0,  # α is 0 before this iteration (face scripts: 20 ep.)
)
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
              ('group_lasso_cfg.alpha', group_lasso_cfg['alpha']),
              ('group_lasso_cfg.warmup_iters',
               group_lasso_cfg['warmup_iters'])]
    for name, value in checks:
        if value < 0:
            raise ValueError(f'{name} must be >= 0, got {value}')
    if lora_cfg['rank'] <= 0:
        raise ValueError('lora_cfg.rank must be a positive integer, got '
                         f'{lora_cfg["rank"]}')
