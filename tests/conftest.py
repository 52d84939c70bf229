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
# The mechanics tests (resume, sequence, baselines...) run the configs that
# state their data section (and so take the TINY_TASK overrides below); the
# one forgetting default has its own tests (test_forgetting_default.py).
TASK_CFGS = [
    osp.join(CONFIGS, 'shapes', 'calibrated',
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


def load_script(path, name=None):
    """Import a script of ``tools/`` or ``benchmarks/`` (not a package)
    as a module; ``path`` is relative to the repository."""
    import importlib.util
    name = name or osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_sequence_inputs(tmp_path, num_tasks=2):
    """Task config files and a base checkpoint that only a fake training
    script reads: ``(task paths, base path)``."""
    tasks = []
    for k in range(1, num_tasks + 1):
        tasks.append(str(tmp_path / f'task{k}.py'))
        with open(tasks[-1], 'w') as f:
            f.write('x = 1\n')
    base = tmp_path / 'base.pth'
    base.write_text('base')
    return tasks, base


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


@pytest.fixture(scope='session')
def coco_standin(tmp_path_factory):
    """A workspace whose ``data/coco`` is a COCO stand-in (80 train / 20
    val images of 64 px: R50 runs on the CPU); returns the workspace
    root."""
    from gslora_det.data.coco_standin import make_coco_standin
    root = tmp_path_factory.mktemp('coco_ws')
    make_coco_standin(str(root / 'data' / 'coco'), num_train=80,
                      num_val=20, image_size=64, seed=0, progress=False)
    return root


@pytest.fixture(scope='session')
def zoo_checkpoint(tmp_path_factory):
    """Stand-in of mmdet's R50 Deformable DETR zoo file (random weights,
    published by mmdet's publish_model.py); made once per session."""
    from gslora_det.data.coco_standin import make_zoo_checkpoint
    return make_zoo_checkpoint(str(tmp_path_factory.mktemp('zoo')))


#: A tiny stock mmdet 3.x Deformable DETR (for `stock_mmdet_checkpoint`).
STOCK_CONFIG = '''
# A stock mmdet 3.x config: mmdet types only, no custom_imports.
_base_ = 'mmdet::_base_/default_runtime.py'
e = 64
attn = dict(embed_dims=e, batch_first=True)
ffn = dict(embed_dims=e, feedforward_channels=2 * e)
model = dict(
    type='DeformableDETR', num_queries=20, num_feature_levels=2,
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.7, 116.3,
                           103.5], std=[58.4, 57.1, 57.4], bgr_to_rgb=True),
    backbone=dict(type='ResNet', depth=18, out_indices=(2, 3),
                  norm_eval=False, init_cfg=None),
    neck=dict(type='ChannelMapper', in_channels=[256, 512], kernel_size=1,
              out_channels=e, act_cfg=None, num_outs=2,
              norm_cfg=dict(type='GN', num_groups=32)),
    encoder=dict(num_layers=1, layer_cfg=dict(
        self_attn_cfg=dict(attn, num_levels=2), ffn_cfg=ffn)),
    decoder=dict(num_layers=1, return_intermediate=True, post_norm_cfg=None,
                 layer_cfg=dict(self_attn_cfg=dict(attn, num_heads=4),
                                cross_attn_cfg=dict(attn, num_levels=2),
                                ffn_cfg=ffn)),
    positional_encoding=dict(num_feats=e // 2, normalize=True, offset=-0.5),
    bbox_head=dict(
        type='DeformableDETRHead', num_classes=80, embed_dims=e,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, loss_weight=2.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
        dict(type='FocalLossCost', weight=2.0),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
    test_cfg=dict(max_per_img=20))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CocoDataset', data_root='data/coco/', indices=8,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='Resize', scale=(64, 64), keep_ratio=True),
                  dict(type='PackDetInputs')]))
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-4),
                     paramwise_cfg=dict(custom_keys=dict(
                         backbone=dict(lr_mult=0.1))))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
val_cfg = val_dataloader = val_evaluator = None
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=2),
    dict(type='MultiStepLR', end=1, milestones=[1])]
'''


@pytest.fixture(scope='session')
def stock_mmdet_checkpoint(coco_standin, tmp_path_factory):
    """epoch_1.pth of mmdet's own tools/train.py (4 iterations on the COCO
    stand-in), run in a process that never imports gslora_det (checked
    with -X importtime)."""
    import mmdet
    run = tmp_path_factory.mktemp('stock_run')
    cfg = str(run / 'stock_deformable_detr.py')
    with open(cfg, 'w') as f:
        f.write(STOCK_CONFIG)
    work = str(run / 'work_dir')
    train = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools',
                     'train.py')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run(
        [sys.executable, '-X', 'importtime', train, cfg, '--work-dir', work],
        cwd=str(coco_standin), env=env, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    imported = {line.rsplit('|', 1)[-1].strip()
                for line in proc.stderr.splitlines()
                if line.startswith('import time:')}
    assert 'mmdet' in imported
    assert not {m for m in imported if m.split('.')[0] == 'gslora_det'}
    return osp.join(work, 'epoch_1.pth')
