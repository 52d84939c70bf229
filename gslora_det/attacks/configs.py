"""The mmengine config of each attack run, derived from the detector's.

An attack run is the detector's own config with: ``load_from`` the model
under attack; the training set replaced by an :class:`~gslora_det.attacks.
datasets.AttackSubset` of it; an ``IterBasedTrainLoop`` of ``steps``
iterations at a constant learning rate (the config's optimizer, its
``lr`` unless overridden, its ``paramwise_cfg`` and gradient clipping);
no validation during training and no checkpoints; then one test pass on
the config's *validation* set with :class:`~gslora_det.attacks.metric.
AttackMetric`. The unattacked model ("none") is the same without training.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config

from gslora_det.config_checks import ConfigError
from gslora_det.evaluation.evaluate import forgetting_evaluator

#: The attacks, in the order they run.
ATTACKS = ('retain_only', 'k_shot', 'head_only')
#: What a command may name: the attacks, or ``'none'`` (evaluations only).
ATTACK_CHOICES = ATTACKS + ('none',)
#: Attacks that take ``k`` (images per forgotten class).
NEEDS_K = ('k_shot', 'head_only')
#: Dataset wrappers an attack looks through (repeating a few images, or
#: class-balanced resampling, has no meaning for a K-step attack).
SEE_THROUGH = ('RepeatDataset', 'ClassBalancedDataset')


def load_detector_config(path: str, cfg_options: Optional[dict] = None
                         ) -> Config:
    """The detector's config, with ``--cfg-options`` applied and checked.

    Raises:
        ConfigError: a GS-LoRA task config, or no train / val data, val
            evaluator or optimizer learning rate.
    """
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('forget_task') is not None:
        raise ConfigError(
            f'{path} is a forgetting-task config (it has forget_task): the '
            "attacks fine-tune the detector as its own config trains it; "
            'pass the detector config the task builds on (its _base_, e.g. '
            'configs/shapes/deformable-detr_r18-tiny_5e_shapes.py)')
    for key in ('train_dataloader', 'val_dataloader', 'val_evaluator'):
        if not cfg.get(key):
            raise ConfigError(f'{path} has no {key}: the attacks train on '
                              'the training set and evaluate on the '
                              'validation set')
    lr = ((cfg.get('optim_wrapper') or {}).get('optimizer') or {}).get('lr')
    if lr is None:
        raise ConfigError(f'{path} has no optim_wrapper.optimizer.lr: pass '
                          '--lr')
    return cfg


def train_dataset_cfg(cfg) -> dict:
    """The training dataset an attack draws from (see :data:`SEE_THROUGH`).

    Raises:
        ConfigError: the training set combines several datasets.
    """
    node = cfg.train_dataloader.dataset
    while node.get('type') in SEE_THROUGH:
        node = node.dataset
    if 'datasets' in node or 'dataset' in node:
        raise ConfigError(
            f'the training set is a {node.get("type")} of other datasets: '
            'attacks need one dataset to draw images from; point '
            'train_dataloader.dataset at one with --cfg-options')
    return copy.deepcopy(node)


def subset_cfg(cfg, attack: str, k: Optional[int], forget: Sequence[str],
               previous: Sequence[str], seed: int) -> dict:
    """The ``AttackSubset`` config of one attack (head-only: k-shot)."""
    mode = 'retain_only' if attack == 'retain_only' else 'k_shot'
    return dict(type='AttackSubset', dataset=train_dataset_cfg(cfg),
                mode=mode, forget_classes=list(forget),
                k=None if mode == 'retain_only' else int(k), seed=int(seed),
                exclude_classes=list(previous))


def plan(attacks: Sequence[str], ks: Sequence[int]
         ) -> List[Tuple[str, Optional[int]]]:
    """``(attack, k)`` settings: ``('none', None)`` first, then each
    attack (the k-taking ones once per ``k``).

    Raises:
        ConfigError: an unknown attack, or a k < 1.
    """
    # 'none' (no attack) always runs first; naming it alone evaluates only.
    unknown = [a for a in attacks if a not in ATTACK_CHOICES]
    if unknown:
        raise ConfigError(f'unknown attack(s) {unknown}; choose from '
                          f'{list(ATTACK_CHOICES)}')
    bad = [k for k in ks if int(k) != k or k < 1]
    if bad:
        raise ConfigError(f'--k values must be positive integers, got {bad}')
    out: List[Tuple[str, Optional[int]]] = [('none', None)]
    for attack in ATTACKS:  # fixed order, whatever the command's order
        if attack in attacks:
            out += ([(attack, int(k)) for k in dict.fromkeys(ks)]
                    if attack in NEEDS_K else [(attack, None)])
    return out


def run_cfg(cfg, *, checkpoint: str, work_dir: str, name: str,
            attack: str, k: Optional[int], forget: Sequence[str],
            previous: Sequence[str], steps: int, lr: float, seed: int,
            score_thr: float, head_prefix: Optional[str] = None,
            progress: Optional[Dict] = None) -> Config:
    """The config of one run (``attack='none'``: evaluation only).

    Args:
        cfg (Config): The detector's config (not modified).
        checkpoint (str): The model under attack (``load_from``).
        work_dir (str): The run's folder.
        name (str): Unique run name (mmengine's experiment name).
        attack (str): ``'none'`` or one of :data:`ATTACKS`.
        k (int, optional): Images per forgotten class.
        forget (Sequence[str]): Forgotten classes.
        previous (Sequence[str]): Classes forgotten earlier.
        steps (int): Training iterations.
        lr (float): Learning rate.
        seed (int): Seed of the image draw and of training.
        score_thr (float): Score threshold of residual and confusion rows.
        head_prefix (str, optional): Class-head prefix (head-only).
        progress (dict, optional): ``label``, ``index``, ``total`` of the
            step progress lines.

    Returns:
        Config: Ready for ``Runner.from_cfg``.
    """
    run = copy.deepcopy(cfg)
    run.work_dir = work_dir
    run.experiment_name = name
    run.load_from = checkpoint
    run.resume = False
    # The dumped config then builds with mmdet's tools too.
    run.custom_imports = dict(imports=['gslora_det', 'gslora_det.attacks'],
                              allow_failed_imports=False)
    run.randomness = dict(seed=int(seed))
    run.default_hooks = dict(run.get('default_hooks') or {}, checkpoint=None)
    if run.get('visualizer'):
        # A fixed name would hand every run the first run's visualizer
        # (mmengine keeps one instance per name) and its log folder.
        run.visualizer['name'] = name
    if run.get('auto_scale_lr'):
        run.auto_scale_lr['enable'] = False
    ev = run.val_evaluator
    ev = forgetting_evaluator(ev[0] if isinstance(ev, (list, tuple)) else ev,
                              forget, previous)
    thrs = sorted({0.1, 0.3, 0.5, float(score_thr)})
    ev.update(type='AttackMetric', confusion_score_thr=float(score_thr),
              residual_score_thrs=thrs)
    run.test_dataloader = copy.deepcopy(run.val_dataloader)
    run.test_evaluator = ev
    run.test_cfg = dict(type='TestLoop')
    run.val_dataloader = run.val_evaluator = run.val_cfg = None
    hooks = [h for h in (run.get('custom_hooks') or [])
             if h.get('type') != 'EvalProgressHook']
    hooks.append(dict(type='EvalProgressHook', what=name))
    if attack == 'none':
        run.train_dataloader = run.train_cfg = None
        run.optim_wrapper = run.param_scheduler = None
        run.custom_hooks = hooks
        return run
    run.train_dataloader.dataset = subset_cfg(cfg, attack, k, forget,
                                              previous, seed)
    run.train_cfg = dict(type='IterBasedTrainLoop', max_iters=int(steps),
                         val_interval=int(steps) + 1)
    run.optim_wrapper.optimizer.lr = float(lr)
    # The config's schedule (warm-up, epoch milestones) is for its own
    # length; relearning attacks fine-tune at a constant rate.
    run.param_scheduler = None
    if attack == 'head_only':
        hooks.append(dict(type='TrainOnlyHook', prefixes=[head_prefix]))
    if progress:
        hooks.append(dict(type='AttackProgressHook', **progress))
    run.custom_hooks = hooks
    return run
