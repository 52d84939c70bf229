"""Pretrain a base model once and publish it as ``<work_dir>/base.pth``.

Shared by the demo and the benchmarks: a finished pretraining is reused,
an interrupted one resumes, and the published checkpoint holds only the
weights and meta (the model every forgetting task starts from).
"""
import os.path as osp
import subprocess
import sys
from typing import Sequence

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: The built-in shapes detector and its 3-task forgetting sequence (used by
#: the demo and the benchmarks).
SHAPES_PRETRAIN_CONFIG = osp.join(REPO, 'configs', 'shapes',
                                  'deformable-detr_r18-tiny_5e_shapes.py')
SHAPES_TASK_CONFIGS = [
    osp.join(REPO, 'configs', 'shapes',
             f'gslora_deformable-detr_r18-tiny_task{k}_shapes.py')
    for k in (1, 2, 3)
]


def publish_checkpoint(src: str, dst: str) -> None:
    """Keep only weights and meta: the base model every task starts from."""
    from gslora_det.checkpoint import (load_checkpoint_safely,
                                       save_checkpoint_atomic)
    ckpt = load_checkpoint_safely(src)
    save_checkpoint_atomic(
        dict(meta=ckpt.get('meta', {}), state_dict=ckpt['state_dict']), dst)


def pretrain_once(config: str, work_dir: str,
                  cfg_options: Sequence[str] = (), tag: str = 'demo',
                  what: str = 'the tiny Deformable DETR') -> str:
    """Pretrain ``config`` in ``<work_dir>/pretrain`` unless ``base.pth``
    exists; return the path of ``base.pth``.

    The last checkpoint is published (not the best): it is what the
    schedule is designed to give.
    """
    base = osp.join(work_dir, 'base.pth')
    if osp.isfile(base):
        print(f'[{tag}] pretrained base model found: {base}', flush=True)
        return base
    pre_dir = osp.join(work_dir, 'pretrain')
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
           '--work-dir', pre_dir, '--quiet-config']  # dumps: the log file
    if osp.isfile(osp.join(pre_dir, 'last_checkpoint')):
        cmd.append('--resume')
    if cfg_options:
        cmd += ['--cfg-options', *cfg_options]
    print(f'[{tag}] pretraining {what}...', flush=True)
    subprocess.run(cmd, check=True)
    with open(osp.join(pre_dir, 'last_checkpoint')) as f:
        last = f.read().strip()
    publish_checkpoint(last, base)
    return base
