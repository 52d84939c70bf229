"""Recovery attacks as a step of a benchmark: retrain, attack, tabulate.

For a finished task of a sequence, :func:`attack_task` retrains the
detector without every class forgotten so far (the detector config's own
recipe, :func:`gslora_det.attacks.retrain_without`; optional: it costs one
pretraining), then runs :func:`gslora_det.attacks.run_attacks` on the
task's merged model, the retrained one and the task's input model, so the
attack report holds the recovery gap and the retrained model's bar row.
Everything is written under the task's folder and reused when present
(both steps skip finished work), so an interrupted benchmark continues.
"""
import json
import os.path as osp
from typing import Callable, Dict, List, Mapping, Sequence

ATTACK_DIR = 'attacks'  #: under the task folder, as tools/forget_sequence.py
RETRAIN_DIR = 'retrained'  #: under the task folder


def task_input(run_dir: str, base: str, k: int) -> str:
    """The checkpoint task ``k`` (1-based) started from."""
    from gslora_det.sequence import MERGED, task_dir
    return base if k == 1 else osp.join(task_dir(run_dir, k - 1), MERGED)


def attack_task(detector_config: str, run_dir: str, base: str, k: int,
                report: Mapping, steps: int, ks: Sequence[int],
                retrain: bool = True,
                log: Callable[[str], None] = print) -> str:
    """Attack task ``k``'s merged model (and a retrained one); return the
    attack folder (``attack_report.json`` inside).

    Args:
        detector_config (str): The detector's own config (no LoRA), the
            recipe of the base model and of the retraining.
        run_dir (str): The sequence's folder (``task_<k>/`` inside).
        base (str): The sequence's base checkpoint.
        k (int): The task, 1-based.
        report (Mapping): Task ``k``'s ``forget_report.json``.
        steps (int): Iterations of each attack.
        ks (Sequence[int]): Images per forgotten class (k-shot, head-only).
        retrain (bool): Also retrain without the classes forgotten so far
            and attack that model (the recovery gap's reference).
        log (callable): Receives the progress lines.
    """
    from gslora_det.attacks import retrain_without, run_attacks
    from gslora_det.sequence import MERGED, task_dir
    folder = task_dir(run_dir, k)
    classes = list(report['forget_classes'])
    previous = list(report.get('previously_forgotten') or [])
    retrained = None
    if retrain:
        log(f'[attack] task {k}: a model retrained without '
            f'{previous + classes} (the base model\'s recipe)')
        retrained = retrain_without(detector_config, previous + classes,
                                    osp.join(folder, RETRAIN_DIR), log=log)
    out = osp.join(folder, ATTACK_DIR)
    run_attacks(detector_config, osp.join(folder, MERGED), classes, out,
                previously_forgotten=previous, ks=ks, steps=steps,
                retrained=retrained, base=task_input(run_dir, base, k),
                log=log)
    return out


def gap_rows(sequence: str, task: int, attack_dir: str) -> List[Dict]:
    """One row per (attack, k) of an attack report's headline: forgotten
    mAP of the attacked merged and retrained models and their gap (0-1).
    """
    with open(osp.join(attack_dir, 'attack_report.json')) as f:
        head = json.load(f)['headline']
    if head['kind'] != 'recovery_gap':
        return [dict(sequence=sequence, task=task, attack=key, merged=value,
                     retrained=None, gap=None)
                for key, value in head['merged'].items()]
    return [dict(sequence=sequence, task=task, attack=key,
                 merged=head['merged'][key],
                 retrained=head['retrained'].get(key), gap=gap)
            for key, gap in head['gap'].items()]


def gap_markdown(rows: Sequence[Mapping]) -> str:
    """The recovery-gap table, in % (gap in points)."""
    from gslora_det.attacks.report import percent_text as pct
    lines = ['| sequence | task | attack | forgotten mAP % after attack: '
             'merged | retrained | recovery gap (points) |',
             '|---|---|---|---|---|---|']
    lines += [f'| {r["sequence"]} | {r["task"]} | {r["attack"]} | '
              f'{pct(r["merged"])} | {pct(r["retrained"])} | '
              f'{pct(r["gap"], signed=True)} |' for r in rows]
    return '\n'.join(lines)
