"""Run a sequence of forgetting tasks, one task config after another.

Task k loads the merged checkpoint of task k-1 (task 1 loads the base
checkpoint, which is only ever read), trains a fresh LoRA with
``tools/train.py`` in a child process, and ends with the merged checkpoint,
adapter and report in ``<work_dir>/task_<k>/``. The runner holds no
training logic: it only chains configs and checkpoints, and picks up where
a previous run stopped (finished tasks are skipped, an interrupted task is
resumed from its last checkpoint). After the last task it writes (and on
every run refreshes) the run summary: ``summary.md``, ``summary.json`` and
the run's plots (:mod:`gslora_det.report.summary`).
"""
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from gslora_det.checkpoint import find_resumable
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


def _remove_stale_temp_files(folder: str) -> None:
    """Temporary files of writes cut short by a kill (never outputs)."""
    if not osp.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith('.') and name.endswith('.tmp'):
            os.remove(osp.join(folder, name))


def run_sequence(task_configs: Sequence[str],
                 base_checkpoint: str,
                 work_dir: str,
                 cfg_options: Optional[List[str]] = None,
                 overwrite: bool = False,
                 train_script: Optional[str] = None,
                 python: str = sys.executable,
                 summary_title: str = 'GS-LoRA forgetting run') -> List[Dict]:
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
        summary_title (str): Heading of ``summary.md``.

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
            _remove_stale_temp_files(folder)
            resume_from = find_resumable(folder)
            if resume_from:
                print(f'[sequence] task {index}: resuming from '
                      f'{resume_from}', flush=True)
                cmd += ['--resume', resume_from]
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
    from gslora_det.report.summary import write_run_summary
    write_run_summary(work_dir, reports, spec['tasks'], base_checkpoint,
                      cfg_options or [], title=summary_title)
    print(f'[sequence] summary: {osp.join(work_dir, "summary.md")}',
          flush=True)
    return reports


def format_table(reports: Sequence[Dict]) -> str:
    """A Markdown table of the tasks' reports (the table of
    ``summary.md``: mAPs, H-Mean, residual detection, groups, time)."""
    from gslora_det.report.summary import task_table
    return task_table(reports)
