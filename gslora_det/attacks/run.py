"""``run_attacks``: every attack on every given model, then the report.

Called by ``tools/attack.py`` and usable as a step of a sequence or a
benchmark. Bad input (class names, files, a ``k`` the data cannot give)
fails before any training, with a message that names the fix. Each run's
result is kept in ``runs/<model>/<attack>/result.json``; a run whose
settings are unchanged is not repeated when the command is run again.
"""
import copy
import hashlib
import json
import os
import os.path as osp
from typing import Callable, Dict, Optional, Sequence

from gslora_det.attacks.configs import (ATTACKS, load_detector_config, plan,
                                        run_cfg, subset_cfg)
from gslora_det.attacks.gap import run_key
from gslora_det.attacks.report import UNITS, headline, write_report
from gslora_det.config_checks import ConfigError, check_class_names
from gslora_det.io_utils import atomic_write_text

#: Fine-tuning iterations of each attack (see docs/attacks.md).
DEFAULT_STEPS = 100
#: Images per forgotten class of the k-shot and head-only attacks.
DEFAULT_KS = (1, 5, 10)
#: The models an attack may run on, in order.
ROLES = ('merged', 'retrained', 'base')


def _describe_checkpoint(path: str) -> Dict:
    st = os.stat(path)
    return dict(path=osp.abspath(path), size=st.st_size,
                mtime_ns=st.st_mtime_ns)


def _draw_images(cfg, settings, forget, previous, seed) -> Dict:
    """Build each attack's subset once: errors (k too large, no retain
    image) come before any training, and the report lists the images."""
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    out = {}
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmdet')):
        for attack, k in settings:
            key = 'retain_only' if attack == 'retain_only' else f'k={k}'
            if attack == 'none' or key in out:
                continue
            ds_cfg = subset_cfg(cfg, attack, k, forget, previous, seed)
            ds = DATASETS.build(copy.deepcopy(ds_cfg))
            out[key] = dict(num_images=len(ds), img_ids=ds.img_ids)
            if ds.img_ids_by_class:
                out[key]['img_ids_by_class'] = ds.img_ids_by_class
    return out


def _check_models(cfg, models: Dict[str, str], need_head: bool):
    """Each checkpoint exists and fits the config's model; the class-head
    prefix of a head-only attack."""
    from gslora_det.attacks.params import class_head_prefix
    from gslora_det.config_checks import (_build_model,
                                          check_checkpoint_matches_model,
                                          prepare_config)
    for role, path in models.items():
        if not osp.isfile(path):
            raise ConfigError(f'{role} checkpoint not found: {path}; pass '
                              'an existing .pth file')
    model = _build_model(cfg)
    first = copy.deepcopy(cfg)
    first.load_from = models['merged']
    prepare_config(first, mode='train', model=model)  # data + checkpoint
    for role, path in models.items():
        other = copy.deepcopy(cfg)
        other.load_from = path
        check_checkpoint_matches_model(other, model)
    try:
        return class_head_prefix(model) if need_head else None
    except ValueError as err:
        raise ConfigError(str(err)) from err


def run_attacks(config: str, checkpoint: str, forget_classes: Sequence[str],
                work_dir: str, previously_forgotten: Sequence[str] = (),
                attacks: Sequence[str] = ATTACKS,
                ks: Sequence[int] = DEFAULT_KS, steps: int = DEFAULT_STEPS,
                lr: Optional[float] = None, seed: int = 0,
                retrained: Optional[str] = None, base: Optional[str] = None,
                cfg_options: Optional[dict] = None, score_thr: float = 0.3,
                runs_dirs: Optional[Dict[str, str]] = None,
                log: Callable[[str], None] = print) -> Dict:
    """Attack the merged model (and the retrained / base ones), report.

    Args:
        config (str): The detector's own config (not a task config).
        checkpoint (str): The merged (forgotten) model.
        forget_classes (Sequence[str]): The classes it forgot.
        work_dir (str): Output folder (``attack_report.json``, ``.md``,
            ``plots/``, ``runs/``).
        previously_forgotten (Sequence[str]): Classes forgotten earlier
            (kept out of retain-only images, reported as ``mAP_old``).
        attacks (Sequence[str]): Subset of :data:`ATTACKS`.
        ks (Sequence[int]): Images per forgotten class.
        steps (int): Iterations of each attack.
        lr (float, optional): Learning rate; None: the config's.
        seed (int): Seed of the image draw and training.
        retrained (str, optional): A model retrained without the classes
            (``tools/retrain_without.py``): adds the recovery gap.
        base (str, optional): The model before forgetting.
        cfg_options (dict, optional): Config overrides.
        score_thr (float): Residual / confusion score threshold.
        runs_dirs (dict, optional): A folder per role (``'retrained'``,
            ``'base'``) for its runs instead of ``work_dir/runs/<role>``:
            several merged models attacked against one retrained model
            (benchmarks/attack_methods.py) share its finished runs, which
            are reused when their settings and checkpoint match.
        log (callable): Receives the progress lines. Defaults to print.

    Returns:
        dict: The report (also written to ``work_dir``).

    Raises:
        ConfigError: bad input; the message names the fix (an
            :class:`~gslora_det.attacks.subsets.AttackDataError` is turned
            into one).
    """
    from gslora_det.attacks.subsets import AttackDataError
    from gslora_det.checkpoint import load_checkpoint_safely, state_dict_of
    from gslora_det.console import LoopProgress
    from gslora_det.task import check_task_classes, dataset_classes
    from gslora_det.attacks.runner import run_one
    if int(steps) < 1:
        raise ConfigError(f'--steps must be >= 1, got {steps}')
    cfg = load_detector_config(config, cfg_options)
    classes = dataset_classes(cfg)
    forget, previous = list(forget_classes), list(previously_forgotten)
    # Named as on the command line first; then the task rules (overlap,
    # something left to retain).
    check_class_names(forget, classes, '--forget-classes')
    check_class_names(previous, classes, '--previously-forgotten')
    retained_classes = check_task_classes(classes, forget, previous)
    settings = plan(attacks, ks)
    models = {r: p for r, p in zip(ROLES, (checkpoint, retrained, base))
              if p}
    head = _check_models(cfg, models, any(a == 'head_only'
                                          for a, _ in settings))
    try:
        images = _draw_images(cfg, settings, forget, previous, seed)
    except AttackDataError as err:
        raise ConfigError(str(err)) from err
    lr_source = 'config' if lr is None else '--lr'
    lr = float(cfg.optim_wrapper.optimizer.lr if lr is None else lr)
    optim = dict(cfg.optim_wrapper.optimizer)
    common = dict(steps=int(steps), lr=lr, seed=int(seed),
                  score_thr=float(score_thr), forget=forget,
                  previous=previous)
    fingerprint_base = dict(common, config=osp.abspath(config),
                            cfg_options=cfg_options, lr_source=lr_source)

    total = len(models) * len(settings)
    progress = LoopProgress(total, noun='attack')
    runs, index = [], 0
    for role, path in models.items():
        initial = None
        for attack, k in settings:
            index += 1
            key = run_key(attack, k)
            slug = key.replace(' k=', '_k')
            run_dir = osp.join((runs_dirs or {}).get(role) or osp.join(
                work_dir, 'runs', role), slug)
            stamp = hashlib.sha256(json.dumps(dict(
                fingerprint_base, attack=attack, k=k,
                checkpoint=_describe_checkpoint(path)), sort_keys=True,
                default=str).encode()).hexdigest()
            done = osp.join(run_dir, 'result.json')
            if osp.isfile(done):
                with open(done) as f:
                    old = json.load(f)
                if old.get('fingerprint') == stamp:
                    progress.skip(index)
                    runs.append(old['run'])
                    continue
            label = f'{role} {key}'
            progress.start(index, label)
            if attack != 'none' and initial is None:
                initial = state_dict_of(load_checkpoint_safely(path))
            run = run_cfg(cfg, checkpoint=path, work_dir=run_dir,
                          name=f'{role}_{slug}', attack=attack, k=k,
                          head_prefix=head,
                          progress=dict(label=label, index=index,
                                        total=total), **common)
            result, runner = run_one(run, initial if attack != 'none'
                                     else None)
            del runner
            entry = dict(model=role, checkpoint=path, attack=attack, k=k,
                         **result)
            frozen = (result['trained'] or {}).get('frozen_changed')
            if frozen:
                raise RuntimeError(f'{label}: frozen parameters changed: '
                                   f'{frozen[:5]}')
            atomic_write_text(done, json.dumps(dict(
                fingerprint=stamp, run=entry), indent=2))
            runs.append(entry)
            progress.end(index)
            m = result['metrics']
            log(f'  {label}: forgotten mAP '
                f'{100 * m.get("mAP_forget", -1):.1f} %, retained mAP '
                f'{100 * m.get("mAP_retain", -1):.1f} %')

    report = dict(
        units=UNITS, config=osp.abspath(config),
        forget_classes=forget, previously_forgotten=previous,
        retained_classes=retained_classes,
        models={r: dict(_describe_checkpoint(p)) for r, p in models.items()},
        settings=dict(
            attacks=[a for a in ATTACKS if a in attacks], k=sorted(
                set(int(k) for k in ks)), steps=int(steps), lr=lr,
            lr_source=lr_source, lr_schedule='constant',
            optimizer=optim.get('type'), optimizer_cfg=optim,
            paramwise_cfg=cfg.optim_wrapper.get('paramwise_cfg'),
            clip_grad=cfg.optim_wrapper.get('clip_grad'),
            batch_size=cfg.train_dataloader.get('batch_size'),
            seed=int(seed), score_thr=float(score_thr),
            iou_thr=next((r['confusion']['iou_thr'] for r in runs
                          if r.get('confusion')), None),
            head_only_trains=head,
            cfg_options=cfg_options),
        images=images, runs=runs)
    report['headline'] = headline(runs)
    paths = write_report(report, work_dir)
    log(f'report written to {paths["json"]} and {paths["markdown"]}')
    return report
