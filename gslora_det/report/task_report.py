"""The content of a task's ``forget_report.json`` (mAPs on the 0-1 scale)."""
from typing import Dict, Mapping, Optional, Sequence

#: The report's ``groups_exactly_zero_rule``.
ZERO_RULE = ('a group is exactly zero when the LoRA update s·B·A of each of '
             'its layers is exactly zero (lora_B or lora_A all zeros; '
             'group_norms also counts the other factor, so it can be > 0): '
             'merging left its base weights bit-identical and the adapter '
             'stores none of its tensors')


def build_report(task: Dict, sets: Dict, before: Dict, after: Dict,
                 norms: Dict[str, float], trainable: int, total: int,
                 train_time: float, inactive_rel_threshold: float,
                 zero_groups: Optional[Sequence[str]] = None) -> Dict:
    """The report of one task.

    Args:
        task (dict): ``forget_task`` of the config.
        sets (dict): Class sets of the metric (forget, retain, old).
        before (dict): Metrics of the input model.
        after (dict): Metrics after forgetting (before merge).
        norms (dict[str, float]): LoRA group norms.
        trainable (int): Trainable parameters.
        total (int): All parameters.
        train_time (float): Training seconds (across resumes).
        inactive_rel_threshold (float): A group below this fraction of the
            largest norm counts as switched off.
        zero_groups (Sequence[str], optional): The groups whose update is
            exactly zero (:func:`gslora_det.zero_groups.split_groups`);
            None: those whose norm is exactly 0.0.

    Returns:
        dict: The report; ``groups_on`` (model order) and
        ``groups_exactly_zero`` split ``group_norms``' groups.
    """
    from gslora_det.evaluation import h_mean
    from gslora_det.group_lasso import inactive_groups
    f_before = before.get('mAP_forget')
    f_after = after.get('mAP_forget')
    r_after = after.get('mAP_retain')
    per_class = sorted(k for k in after if k.startswith('AP_'))
    zero = set(zero_groups if zero_groups is not None else
               (k for k, v in norms.items() if v == 0.0))
    return dict(
        task=task.get('index', 1),
        forget_classes=sets.get('forget', task.get('forget_classes')),
        retained_classes=sets.get('retain'),
        previously_forgotten=sets.get('old', []),
        mAP_forget_before=f_before,
        mAP_forget_after=f_after,
        mAP_retain_before=before.get('mAP_retain'),
        mAP_retain_after=r_after,
        mAP_old_before=before.get('mAP_old'),
        mAP_old_after=after.get('mAP_old'),
        mAP_all_before=before.get('mAP_all'),
        mAP_all_after=after.get('mAP_all'),
        h_mean=(h_mean(f_before, f_after, r_after)
                if None not in (f_before, f_after, r_after) else None),
        per_class_AP_before={k[3:]: before.get(k) for k in per_class},
        per_class_AP_after={k[3:]: after[k] for k in per_class},
        residual_before={k: v for k, v in before.items()
                         if k.startswith('residual')},
        residual_after={k: v for k, v in after.items()
                        if k.startswith('residual')},
        group_norms=norms,
        inactive_groups=inactive_groups(norms, inactive_rel_threshold),
        groups_on=[k for k in norms if k not in zero],
        groups_exactly_zero=[k for k in norms if k in zero],
        groups_exactly_zero_rule=ZERO_RULE,
        trainable_params=trainable,
        total_params=total,
        train_time_s=round(train_time, 2),
    )


def describe_groups(report: Mapping) -> str:
    """The report's groups in one line (the task's log): on, exactly
    zero, and below the relative norm threshold."""
    def names(groups):
        return ', '.join(groups) if groups else 'none'

    on = report['groups_on']
    return (f'groups on: {len(on)}/{len(report["group_norms"])} '
            f'({names(on)}); exactly zero: '
            f'{names(report["groups_exactly_zero"])}; below the relative '
            f'norm threshold: {names(report["inactive_groups"])}')
