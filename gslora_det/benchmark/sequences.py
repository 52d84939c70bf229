"""The three built-in forgetting sequences the benchmarks run.

Per sequence: the detector config that pretrains its base (also the
recipe of a model retrained without some classes), where the benchmarks
keep that base, the fixed step count the hand-calibrated configs used
before the controller (None: there were none) and the task configs, in
order. Used by ``benchmarks/forgetting_bar.py`` and
``benchmarks/attack_methods.py``.
"""
import os.path as osp

from gslora_det.pretrain import REPO, SHAPES_PRETRAIN_CONFIG, \
    SHAPES_TASK_CONFIGS

SEQUENCES = {
    'shapes': dict(
        pretrain=SHAPES_PRETRAIN_CONFIG,  # the demo's base and sequence
        base='work_dirs/demo/base.pth', fixed_steps=300,
        tasks=list(SHAPES_TASK_CONFIGS)),
    'bccd': dict(
        pretrain=osp.join(REPO, 'configs', 'bccd',
                          'deformable-detr_effnet-lite0-tiny_bccd.py'),
        base='work_dirs/bccd/base.pth', fixed_steps=200,
        tasks=[osp.join(REPO, 'configs', 'bccd', 'gslora_deformable-detr_'
                        f'effnet-lite0-tiny_task{k}_bccd.py')
               for k in (1, 2)]),
    'chess': dict(
        pretrain=osp.join(REPO, 'configs', 'chess',
                          'deformable-detr_effnet-lite0-tiny_chess.py'),
        base='work_dirs/chess/base.pth', fixed_steps=None,
        tasks=[osp.join(REPO, 'configs', 'chess', 'gslora_deformable-detr_'
                        f'effnet-lite0-tiny_task{k}_chess.py')
               for k in (1, 2)]),
}
