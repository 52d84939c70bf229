"""Run a sequence of forgetting tasks, one task config after another.

Task k loads the merged checkpoint of task k-1 (task 1 loads the base
checkpoint, which is only ever read), trains a fresh LoRA with
``tools/train.py`` in a child process, and ends with the merged checkpoint,
adapter and report in ``<work_dir>/task_<k>/``. The runner holds no
training logic: it only chains configs and checkpoints, and picks up where
a previous run stopped (finished tasks are skipped, an interrupted task is
resumed from its last checkpoint).
"""
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from gslora_det.io_utils import atomic_write_text

REPORT = 'forget_report.json'
MERGED = 'merged.pth'


class SequenceError(RuntimeError):
    """A sequence that cannot run, with the reason and the fix."""


def task_dir(work_dir: str, index: int) -> str:
    return osp.join(work_dir, f'task_{index}')


def task_done(folder: str) -> bool:
    """A task is done when its report exists: the hook writes it last."""
    return osp.isfile(osp.join(folder, REPORT)) and osp.isfile(
        osp.join(folder, MERGED))


def _check_run_dir(work_dir: str, spec: Dict, overwrite: bool) -> None:
    """Refuse to mix two different sequences in one run directory."""
    path = osp.join(work_dir, 'sequence.json')
    if osp.isfile(path) and not overwrite:
        with open(path) as f:
            old = json.load(f)
        if old != spec:
            raise SequenceError(
                f'{work_dir} holds a run of another sequence '
                f'({old}). Use another --work-dir, or pass --overwrite to '
                'start this sequence there anew.')
    os.makedirs(work_dir, exist_ok=True)
    atomic_write_text(path, json.dumps(spec, indent=2))


def run_sequence(task_configs: Sequence[str],
                 base_checkpoint: str,
                 work_dir: str,
                 cfg_options: Optional[List[str]] = None,
                 overwrite: bool = False,
                 train_script: Optional[str] = None,
                 python: str = sys.executable) -> List[Dict]:
    """Run (or finish) every task of a sequence.

    Args:
        task_configs (Sequence[str]): Task config files, in order.
        base_checkpoint (str): The model to forget from; never written.
        work_dir (str): Run directory; task k works in ``task_<k>/``.
        cfg_options (list[str], optional): ``key=value`` overrides passed to
            every task.
        overwrite (bool): Start anew in a directory that holds another
            sequence's run. Defaults to False.
        train_script (str, optional): ``tools/train.py`` to use.
        python (str): Interpreter for the child processes.

    Returns:
        list[dict]: The tasks' reports, in order.
    """
    if not osp.isfile(base_checkpoint):
        raise SequenceError(f'base checkpoint not found: {base_checkpoint}')
    for cfg in task_configs:
        if not osp.isfile(cfg):
            raise SequenceError(f'task config not found: {cfg}')
    train_script = train_script or osp.join(
        osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'train.py')
    spec = dict(tasks=[osp.normpath(c) for c in task_configs],
                base_checkpoint=osp.normpath(base_checkpoint),
                cfg_options=list(cfg_options or []))
    if overwrite and osp.isdir(work_dir):
        import shutil
        for k in range(1, len(task_configs) + 1):
            shutil.rmtree(task_dir(work_dir, k), ignore_errors=True)
    _check_run_dir(work_dir, spec, overwrite)

    reports, previous = [], base_checkpoint
    for index, cfg in enumerate(task_configs, start=1):
        folder = task_dir(work_dir, index)
        if task_done(folder):
            print(f'[sequence] task {index}: done already, skipping',
                  flush=True)
        else:
            cmd = [python, train_script, cfg, '--work-dir', folder]
            if osp.isfile(osp.join(folder, 'last_checkpoint')):
                print(f'[sequence] task {index}: resuming in {folder}',
                      flush=True)
                cmd += ['--resume']
                options = []
            else:
                print(f'[sequence] task {index}: {cfg} from {previous}',
                      flush=True)
                options = [f'load_from={previous}']
            options += list(cfg_options or [])
            if options:
                cmd += ['--cfg-options'] + options
            result = subprocess.run(cmd)
            if result.returncode != 0:
                raise SequenceError(
                    f'task {index} ({cfg}) failed with exit code '
                    f'{result.returncode}; fix the cause and run the same '
                    'command again to resume')
        with open(osp.join(folder, REPORT)) as f:
            reports.append(json.load(f))
        previous = osp.join(folder, MERGED)
    return reports


def format_table(reports: Sequence[Dict]) -> str:
    """A Markdown table of the tasks' reports."""

    def pct(v):
        return '–' if v is None else f'{100 * v:.1f}'

    lines = [
        '| task | forgotten classes | mAP forget before → after | '
        'mAP retain before → after | mAP old after | H-Mean | '
        'groups off | train s |',
        '|---|---|---|---|---|---|---|---|'
    ]
    for r in reports:
        lines.append(
            f'| {r["task"]} | {", ".join(r["forget_classes"])} | '
            f'{pct(r["mAP_forget_before"])} → {pct(r["mAP_forget_after"])} '
            f'| {pct(r["mAP_retain_before"])} → '
            f'{pct(r["mAP_retain_after"])} | {pct(r["mAP_old_after"])} | '
            f'{pct(r["h_mean"])} | {len(r.get("inactive_groups", []))}/'
            f'{len(r["group_norms"])} | {r["train_time_s"]:.0f} |')
    return '\n'.join(lines)
