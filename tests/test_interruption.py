"""SIGKILL a real forgetting sequence at several points; running the same
command again resumes and ends with the same per-task results as the
uninterrupted run (same seed, CPU)."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, TOOLS, sequence_args

#: Resumed CPU runs replay the same batches (mmengine advances the data
#: loader through the skipped steps) and restore LoRA and optimiser state
#: exactly; only float summation order may differ.
TOLERANCE = 1e-4


def kill_when(args, cwd, condition, timeout=600):
    """Start the sequence command; SIGKILL its process group as soon as
    ``condition()`` holds. Returns True if it was killed."""
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.Popen([sys.executable, osp.join(TOOLS, args[0]),
                             *args[1:]], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.wait()
    return False


def test_sigkill_at_several_points_then_resume(workspace, base_checkpoint,
                                               sequence_run):
    reference_run = sequence_run[0]
    run = osp.join(str(workspace), 'work_dirs', 'seq_killed')
    args = sequence_args(run, base_checkpoint)

    def exists(*parts):
        return lambda: osp.exists(osp.join(run, *parts))

    points = [
        ('mid task 1, after its first checkpoint',
         exists('task_1', 'iter_2.pth')),
        ('task 1 while saving its outputs', exists('task_1', 'merged.pth')),
        ('between tasks', exists('task_1', 'forget_report.json')),
        ('mid task 2', exists('task_2', 'iter_2.pth')),
    ]
    killed = [name for name, cond in points
              if kill_when(args, workspace, cond)]
    assert killed, 'the run finished before any kill point'
    # the last run, uninterrupted, finishes the sequence
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, osp.join(TOOLS, args[0]),
                           *args[1:]], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    for k in (1, 2):
        with open(osp.join(run, f'task_{k}', 'forget_report.json')) as f:
            got = json.load(f)
        with open(osp.join(reference_run, f'task_{k}',
                           'forget_report.json')) as f:
            want = json.load(f)
        for group, norm in want['group_norms'].items():
            assert got['group_norms'][group] == pytest.approx(
                norm, abs=TOLERANCE), (k, group, killed)
        for key in ('mAP_forget_before', 'mAP_forget_after',
                    'mAP_retain_before', 'mAP_retain_after', 'h_mean'):
            assert got[key] == pytest.approx(want[key], abs=TOLERANCE), key
        # no temporary file was left behind as if it were an output
        leftovers = [n for n in os.listdir(osp.join(run, f'task_{k}'))
                     if n.endswith('.tmp')]
        assert not leftovers
