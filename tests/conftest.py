"""Shared fixtures: a tiny generated shapes set and a workspace holding it.

Configs read the built-in data from the relative path ``data/shapes/``, so
integration tests run the real configs from a temporary workspace whose
``data/shapes`` is a tiny generated set.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'configs')
TOOLS = osp.join(REPO, 'tools')
PRETRAIN_CFG = osp.join(CONFIGS, 'shapes',
                        'deformable-detr_r18-tiny_5e_shapes.py')
TASK_CFGS = [
    osp.join(CONFIGS, 'shapes',
             f'gslora_deformable-detr_r18-tiny_task{k}_shapes.py')
    for k in (1, 2, 3)
]


@pytest.fixture(scope='session')
def workspace(tmp_path_factory):
    """A folder with ``data/shapes`` = 48 train / 16 val tiny images."""
    from gslora_det.data.shapes import generate_shapes_dataset
    root = tmp_path_factory.mktemp('ws')
    generate_shapes_dataset(str(root / 'data' / 'shapes'), num_train=48,
                            num_val=16, seed=1, progress=False)
    return root


def run_tool(script, *args, cwd, check=True, timeout=900):
    """Run ``tools/<script>`` in a child process (as a user would)."""
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.run([sys.executable, osp.join(TOOLS, script), *args],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{script} {args} failed ({proc.returncode}):\n'
            f'{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}')
    return proc
