"""The quality bar a forgetting task must meet, checked on its report.

Per task, on the validation images (``forget_report.json``, 0-1 scale):

* forgotten mAP <= 0.02 and previously forgotten mAP <= 0.02;
* retained mAP drop (before - after) <= 0.03;
* residual detection of the forgotten objects at score 0.3: own class
  <= 1 %, any class <= 2 %, where a validation set with few forgotten
  objects is allowed one object (2 % of 30 objects is less than one).
"""
from typing import Dict, List, Mapping, Optional

#: The bar's limits (0-1).
BAR = dict(forget_map=0.02, old_map=0.02, retain_drop=0.03, own=0.01,
           any=0.02, score_thr=0.3)


def _allowed(fraction: float, num_gt: int) -> float:
    """A fraction limit, but at least one object of ``num_gt``."""
    return max(fraction, 1.0 / num_gt) if num_gt else fraction


def check_bar(report: Mapping, bar: Optional[Mapping] = None) -> Dict:
    """Whether one task's report meets the bar, and why not.

    Returns:
        dict: ``met`` (bool), ``failed`` (list of the limits missed, with
        the measured value), and the measured ``forget_map``, ``old_map``,
        ``retain_drop``, ``own``, ``any`` (0-1) and ``num_gt``.
    """
    bar = dict(BAR, **(bar or {}))
    res = report.get('residual_after') or {}
    thr = f'{float(bar["score_thr"]):g}'
    num_gt = int(res.get('residual_num_gt') or 0)
    before, after = report.get('mAP_retain_before'), \
        report.get('mAP_retain_after')
    got = dict(
        forget_map=report.get('mAP_forget_after'),
        old_map=report.get('mAP_old_after'),
        retain_drop=(before - after) if None not in (before, after) else
        None,
        own=res.get(f'residual_own@{thr}'),
        any=res.get(f'residual_any@{thr}'),
    )
    limits = dict(forget_map=bar['forget_map'], old_map=bar['old_map'],
                  retain_drop=bar['retain_drop'],
                  own=_allowed(bar['own'], num_gt),
                  any=_allowed(bar['any'], num_gt))
    failed: List[str] = []
    for key, limit in limits.items():
        value = got[key]
        if value is not None and value > limit + 1e-12:
            failed.append(f'{key} {value:.4f} > {limit:.4f}')
    return dict(met=not failed, failed=failed, num_gt=num_gt, **got)


def retrained_report(attack_report: Mapping, model: str = 'retrained'
                     ) -> Optional[Dict]:
    """A task-report-shaped dict of an unattacked model of an attack
    report (``tools/attack.py``), so that :func:`check_bar` measures a
    model retrained without the classes against the same bar.

    Its retained "before" is the base model's unattacked retained mAP
    (``--base``), so the drop is what retraining cost the retained
    classes. Returns None when the report has no unattacked ``model`` run.
    """
    none = {r['model']: r['metrics'] for r in attack_report.get('runs', [])
            if r['attack'] == 'none'}
    if model not in none:
        return None
    got, base = none[model], none.get('base', {})
    thr = f'{float(attack_report["settings"]["score_thr"]):g}'
    keys = (f'residual_own@{thr}', f'residual_any@{thr}', 'residual_num_gt')
    return dict(mAP_forget_after=got.get('mAP_forget'),
                mAP_old_after=got.get('mAP_old'),
                mAP_retain_before=base.get('mAP_retain'),
                mAP_retain_after=got.get('mAP_retain'),
                residual_after={k: got[k] for k in keys if k in got})
