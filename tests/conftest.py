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


# 4 iterations of 2 retain + 2 forget images, evaluation on 16 images.
TINY_TASK = [
    'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
    'train_dataloader.batch_size=4',
    'train_dataloader.batch_sampler.forget_per_batch=2',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
    'default_hooks.checkpoint.interval=2',
    'replay.sample_ratio=0.5'
]


@pytest.fixture(scope='session')
def base_checkpoint(workspace):
    """A briefly pretrained tiny detector (weights + meta only)."""
    from gslora_det.checkpoint import (load_checkpoint_safely,
                                       save_checkpoint_atomic)
    work = osp.join(str(workspace), 'work_dirs', 'pre_e2e')
    run_tool('train.py', PRETRAIN_CFG, '--work-dir', work, '--cfg-options',
             'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
             'train_dataloader.num_workers=0',
             'train_dataloader.persistent_workers=False',
             'val_dataloader.num_workers=0',
             'val_dataloader.persistent_workers=False', cwd=workspace)
    ckpt = load_checkpoint_safely(osp.join(work, 'epoch_1.pth'))
    base = osp.join(work, 'base.pth')
    save_checkpoint_atomic(dict(meta=ckpt['meta'],
                                state_dict=ckpt['state_dict']), base)
    return base


def sequence_args(run, base_checkpoint):
    return ['forget_sequence.py', *TASK_CFGS[:2], '--base-checkpoint',
            base_checkpoint, '--work-dir', run, '--cfg-options', *TINY_TASK]


@pytest.fixture(scope='session')
def sequence_run(workspace, base_checkpoint):
    """Run the two-task sequence once; return (run dir, stdout, base hash
    before the run)."""
    from gslora_det.checkpoint import sha256_file
    run = osp.join(str(workspace), 'work_dirs', 'seq')
    base_hash = sha256_file(base_checkpoint)
    proc = run_tool(*sequence_args(run, base_checkpoint), cwd=workspace)
    return run, proc.stdout, base_hash
