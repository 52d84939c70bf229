"""Run a sequence of forgetting tasks, one task config after another.

Task k loads the merged checkpoint of task k-1 (task 1 loads the base
checkpoint, which is only ever read), trains a fresh LoRA with
``tools/train.py`` in a child process, and ends with the merged checkpoint,
adapter and report in ``<work_dir>/task_<k>/``. The runner holds no
training logic: it only chains configs and checkpoints, and picks up where
a previous run stopped (finished tasks are skipped, an interrupted task is
resumed from its last checkpoint). ``sequence.json`` records the run (task
configs, base checkpoint and its SHA-256, options); a rerun with other
tasks or options, or with a base of other bytes once a task has begun, is
refused. After the last task it writes (and on every run refreshes) the
run summary: ``summary.md``, ``summary.json`` and the run's plots
(:mod:`gslora_det.report.summary`).

Each task's child can be several processes (:class:`Launch`): through
``torch.distributed.run`` (``launcher='pytorch'``, N processes per node) or
as an ``srun`` job step of the current Slurm allocation
(``launcher='slurm'``). The runner itself stays one process per node; only
node 0 writes the run files (the tasks' files are written by rank 0 of
each task, see ``ForgetTaskHook``).
"""
import json
import os
import os.path as osp
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from gslora_det.checkpoint import find_resumable, sha256_file
from gslora_det.console import LoopProgress
from gslora_det.io_utils import atomic_write_text

REPORT = 'forget_report.json'
MERGED = 'merged.pth'
#: sequence.json's key of the base checkpoint's SHA-256.
BASE_SHA = 'base_checkpoint_sha256'


class SequenceError(RuntimeError):
    """A sequence that cannot run, with the reason and the fix."""


@dataclass
class Launch:
    """How each task's ``tools/train.py`` is started.

    Args:
        launcher (str): ``none`` (one process), ``pytorch`` (through
            ``torch.distributed.run``) or ``slurm`` (an ``srun`` job step;
            run the sequence once, inside an sbatch script or salloc).
        nproc_per_node (int): Processes per node (``pytorch``).
        nnodes (int): Nodes (``pytorch``); run the same command on each.
        node_rank (int): This node's rank (``pytorch``).
        master_addr (str): Address of node 0 (``pytorch``).
        master_port (int): Free port on node 0 (``pytorch``).
        srun_args (str): Extra ``srun`` arguments (``slurm``), e.g.
            ``--ntasks=16 --ntasks-per-node=8 --gres=gpu:8``.
    """
    launcher: str = 'none'
    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = '127.0.0.1'
    master_port: int = 29500
    srun_args: str = ''

    def check(self) -> None:
        if self.launcher not in ('none', 'pytorch', 'slurm'):
            raise SequenceError(f'unknown launcher {self.launcher!r}; use '
                                'none, pytorch or slurm')
        if self.nproc_per_node < 1 or self.nnodes < 1 or not (
                0 <= self.node_rank < self.nnodes):
            raise SequenceError(
                f'bad process layout: nproc_per_node={self.nproc_per_node}'
                f', nnodes={self.nnodes}, node_rank={self.node_rank} '
                '(need >= 1, >= 1 and 0 <= node_rank < nnodes)')
        if self.launcher == 'slurm' and not shutil.which('srun'):
            raise SequenceError('--launcher slurm needs srun on PATH: run '
                                'the sequence on a Slurm node')
        if self.launcher == 'slurm' and os.environ.get(
                'SLURM_PROCID', '0') != '0':
            raise SequenceError(
                'tools/forget_sequence.py was started as several Slurm '
                'tasks; start it once (in an sbatch script or under '
                'salloc): with --launcher slurm it runs each task as an '
                'srun job step over the allocation')

    def command(self, python: str, train_script: str) -> List[str]:
        """The command that starts ``train_script`` (arguments follow)."""
        if self.launcher == 'pytorch':
            return [python, '-m', 'torch.distributed.run',
                    f'--nnodes={self.nnodes}',
                    f'--node_rank={self.node_rank}',
                    f'--master_addr={self.master_addr}',
                    f'--nproc_per_node={self.nproc_per_node}',
                    f'--master_port={self.master_port}', train_script]
        if self.launcher == 'slurm':
            return (['srun', '--kill-on-bad-exit=1'] +
                    shlex.split(self.srun_args) +
                    [python, '-u', train_script])
        return [python, train_script]

    @property
    def writes_run_files(self) -> bool:
        """Only node 0 writes the run's own files (several nodes share
        the run directory)."""
        return self.launcher != 'pytorch' or self.node_rank == 0


def task_dir(work_dir: str, index: int) -> str:
    return osp.join(work_dir, f'task_{index}')


def task_done(folder: str) -> bool:
    """A task is done when its report exists: the hook writes it last."""
    return osp.isfile(osp.join(folder, REPORT)) and osp.isfile(
        osp.join(folder, MERGED))


def _started_tasks(work_dir: str, count: int) -> List[int]:
    """Tasks whose folder holds anything: run, or begun, from the base."""
    return [k for k in range(1, count + 1)
            if osp.isdir(task_dir(work_dir, k)) and os.listdir(
                task_dir(work_dir, k))]


def _recorded_base_sha(work_dir: str, old: Dict) -> Optional[str]:
    """The base hash the run started from: sequence.json's, or, for a run
    of an older version, the input hash task 1 recorded."""
    if old.get(BASE_SHA):
        return old[BASE_SHA]
    path = osp.join(task_dir(work_dir, 1), 'before_metrics.json')
    if osp.isfile(path):
        with open(path) as f:
            return json.load(f).get('input_checkpoint_sha256')
    return None


def _check_run_dir(work_dir: str, spec: Dict, overwrite: bool,
                   write: bool = True) -> None:
    """Refuse to mix two different sequences, or two base checkpoints, in
    one run directory. The base is identified by its SHA-256: the same
    bytes under another path are the same base."""
    path = osp.join(work_dir, 'sequence.json')
    if osp.isfile(path) and not overwrite:
        with open(path) as f:
            old = json.load(f)
        old_sha = _recorded_base_sha(work_dir, old)
        ident = ('base_checkpoint', BASE_SHA) if old_sha else (BASE_SHA,)
        if {k: v for k, v in old.items() if k not in ident} != {
                k: v for k, v in spec.items() if k not in ident}:
            raise SequenceError(
                f'{work_dir} holds a run of another sequence '
                f'({old}). Use another --work-dir, or pass --overwrite to '
                'start this sequence there anew.')
        started = _started_tasks(work_dir, len(spec['tasks']))
        if old_sha and old_sha != spec[BASE_SHA] and started:
            raise SequenceError(
                f'the base checkpoint {spec["base_checkpoint"]} is not the '
                f'one this run started from (sha256 {old_sha[:12]}... '
                f'then, {spec[BASE_SHA][:12]}... now), and task(s) '
                f'{started} ran from the old one. Restore the old base, use '
                'another --work-dir, or pass --overwrite to start this '
                'sequence there anew.')
    if write:
        os.makedirs(work_dir, exist_ok=True)
        atomic_write_text(path, json.dumps(spec, indent=2))


def _remove_stale_temp_files(folder: str) -> None:
    """Temporary files of writes cut short by a kill (never outputs)."""
    if not osp.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith('.') and name.endswith('.tmp'):
            os.remove(osp.join(folder, name))


def _wait_for(path: str, timeout_s: float = 300.0) -> None:
    """Wait until another node's file shows up on this one."""
    import time
    deadline = time.time() + timeout_s
    while not osp.isfile(path):
        if time.time() > deadline:
            raise SequenceError(
                f'{path} did not appear within {timeout_s:.0f} s; the run '
                'directory must be on a file system shared by all nodes')
        time.sleep(2)


def run_sequence(task_configs: Sequence[str],
                 base_checkpoint: str,
                 work_dir: str,
                 cfg_options: Optional[List[str]] = None,
                 overwrite: bool = False,
                 train_script: Optional[str] = None,
                 python: str = sys.executable,
                 summary_title: str = 'GS-LoRA forgetting run',
                 launch: Optional[Launch] = None,
                 continue_on_unmet: bool = False,
                 progress: Optional[LoopProgress] = None) -> List[Dict]:
    """Run (or finish) every task of a sequence.

    Args:
        task_configs (Sequence[str]): Task config files, in order.
        base_checkpoint (str): The model to forget from; never written.
        work_dir (str): Run directory; task k works in ``task_<k>/``.
        cfg_options (list[str], optional): ``key=value`` overrides passed to
            every task.
        overwrite (bool): Start anew in a directory that holds another
            sequence's run (or one from another base checkpoint). Defaults
            to False.
        train_script (str, optional): ``tools/train.py`` to use.
        python (str): Interpreter for the child processes.
        summary_title (str): Heading of ``summary.md``.
        launch (Launch, optional): How each task is started; one process
            by default.
        continue_on_unmet (bool): Go on to the next task when a task's
            controller reached the step limit without meeting its target.
            Defaults to False: the sequence stops there with the reason.
        progress (LoopProgress, optional): Prints the tasks' progress
            lines (``start``/``end``/``skip``); a sweep over many
            sequences passes one whose lines and ETA cover the sweep.
            Defaults to ``"[sequence] task k/N ..."`` lines.

    Returns:
        list[dict]: The tasks' reports, in order.
    """
    launch = launch or Launch()
    launch.check()
    writer = launch.writes_run_files
    if overwrite and not writer:
        raise SequenceError(
            '--overwrite on a node other than node 0 could race with the '
            'removal on node 0: empty the run directory first, then start '
            'every node without --overwrite')
    if not osp.isfile(base_checkpoint):
        raise SequenceError(f'base checkpoint not found: {base_checkpoint}')
    for cfg in task_configs:
        if not osp.isfile(cfg):
            raise SequenceError(f'task config not found: {cfg}')
    train_script = train_script or osp.join(
        osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'train.py')
    spec = dict(tasks=[osp.normpath(c) for c in task_configs],
                base_checkpoint=osp.normpath(base_checkpoint),
                cfg_options=list(cfg_options or []),
                **{BASE_SHA: sha256_file(base_checkpoint)})
    if overwrite and osp.isdir(work_dir):
        for k in range(1, len(task_configs) + 1):
            shutil.rmtree(task_dir(work_dir, k), ignore_errors=True)
    _check_run_dir(work_dir, spec, overwrite, write=writer)

    reports, previous = [], base_checkpoint
    # Children: config and environment dumps to their log files only.
    progress = progress or LoopProgress(len(task_configs), 'task',
                                        '[sequence]')
    for index, cfg in enumerate(task_configs, start=1):
        folder = task_dir(work_dir, index)
        if task_done(folder):
            progress.skip(index)
        else:
            cmd = launch.command(python, train_script) + [
                cfg, '--work-dir', folder, '--quiet-config']
            if writer:
                _remove_stale_temp_files(folder)
            resume_from = find_resumable(folder)
            if resume_from:
                progress.start(index, f'{cfg}, resuming from {resume_from}')
                cmd += ['--resume', resume_from]
                options = []
            else:
                progress.start(index, f'{cfg} from {previous}')
                options = [f'load_from={previous}']
            options += list(cfg_options or [])
            if options:
                cmd += ['--cfg-options'] + options
            if launch.launcher != 'none':
                cmd += ['--launcher', launch.launcher]
            result = subprocess.run(cmd)
            if result.returncode != 0:
                raise SequenceError(
                    f'task {index} ({cfg}) failed with exit code '
                    f'{result.returncode}; fix the cause and run the same '
                    'command again to resume')
            progress.end(index)
        if not writer:  # node 0 wrote it; shared file systems may lag
            _wait_for(osp.join(folder, REPORT))
        with open(osp.join(folder, REPORT)) as f:
            reports.append(json.load(f))
        previous = osp.join(folder, MERGED)
        unmet = (reports[-1].get('controller') or {}).get('status') == \
            'limit_reached'
        if unmet and index < len(task_configs) and not continue_on_unmet:
            raise SequenceError(
                f'task {index} ({cfg}) reached its step limit without '
                f'meeting the forgetting target: '
                f'{reports[-1]["controller"].get("summary", "")}. The '
                f'sequence stops here (its outputs are in {folder}); to go '
                'on anyway, run the same command with --continue-on-unmet')
    if not writer:
        return reports
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
