"""A whole (tiny) forgetting sequence end to end, as a user runs it:
tools/forget_sequence.py over two task configs from a small pretrained
model, then the outputs are checked one by one."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from conftest import PRETRAIN_CFG, REPO, TASK_CFGS, run_tool

REQUIRED_KEYS = [
    'task', 'forget_classes', 'retained_classes', 'previously_forgotten',
    'mAP_forget_before', 'mAP_forget_after', 'mAP_retain_before',
    'mAP_retain_after', 'mAP_old_after', 'h_mean', 'group_norms',
    'trainable_params', 'total_params', 'train_time_s'
]
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


@pytest.fixture(scope='module')
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


def test_two_task_sequence(workspace, base_checkpoint):
    from gslora_det.adapter import load_adapter
    from gslora_det.checkpoint import sha256_file
    from gslora_det.inject import apply_adapter

    run = osp.join(str(workspace), 'work_dirs', 'seq')
    base_hash = sha256_file(base_checkpoint)
    args = ['forget_sequence.py', *TASK_CFGS[:2], '--base-checkpoint',
            base_checkpoint, '--work-dir', run, '--cfg-options', *TINY_TASK]
    proc = run_tool(*args, cwd=workspace)
    assert '| task |' in proc.stdout

    reports = []
    for k in (1, 2):
        folder = osp.join(run, f'task_{k}')
        with open(osp.join(folder, 'forget_report.json')) as f:
            report = json.load(f)
        reports.append(report)
        for key in REQUIRED_KEYS:
            assert key in report, key
        assert report['task'] == k
        for key in ('mAP_forget_before', 'mAP_forget_after',
                    'mAP_retain_before', 'mAP_retain_after'):
            assert 0 <= report[key] <= 1
        assert len(report['group_norms']) == 6
        assert report['trainable_params'] == 6 * 2 * 8 * (128 + 512)
    assert reports[0]['mAP_old_after'] is None
    assert reports[1]['previously_forgotten'] == ['blue_triangle',
                                                  'orange_star']
    assert reports[1]['mAP_old_after'] is not None
    assert 'green_square' not in reports[1]['retained_classes']

    # task 2 started from task 1's merged model: its "before" on task 1's
    # classes is task 1's "after"
    assert osp.isfile(osp.join(run, 'task_2', 'merged.pth'))

    # base + adapter == merged, for each task
    prev = base_checkpoint
    for k in (1, 2):
        folder = osp.join(run, f'task_{k}')
        tensors, meta = load_adapter(osp.join(folder, 'adapter.safetensors'))
        assert meta['rank'] == 8 and meta['scaling'] == pytest.approx(1 / 8)
        assert all('lora_' in key for key in tensors)
        before = torch.load(prev, weights_only=True)['state_dict']
        merged = torch.load(osp.join(folder, 'merged.pth'),
                            weights_only=True)['state_dict']
        assert not any('lora_' in key for key in merged)
        assert set(merged) == set(before)
        rebuilt = apply_adapter(before, tensors, meta['scaling'])
        for key in merged:
            assert torch.allclose(rebuilt[key], merged[key], atol=1e-6), key
        prev = osp.join(folder, 'merged.pth')

    # the base checkpoint is never written to
    assert sha256_file(base_checkpoint) == base_hash

    # a second run picks up where the first stopped: nothing to redo
    proc = run_tool(*args, cwd=workspace)
    assert proc.stdout.count('done already') == 2

    # another sequence in the same run dir is refused
    proc = run_tool('forget_sequence.py', TASK_CFGS[1], '--base-checkpoint',
                    base_checkpoint, '--work-dir', run, cwd=workspace,
                    check=False)
    assert proc.returncode != 0 and 'another sequence' in proc.stderr


def test_merged_checkpoint_loads_into_stock_mmdet(workspace,
                                                  base_checkpoint):
    """No plug-in: mmdet's DeformableDETR, strict loading, weights-only."""
    run = osp.join(str(workspace), 'work_dirs', 'seq')
    merged = osp.join(run, 'task_1', 'merged.pth')
    if not osp.isfile(merged):
        pytest.skip('needs test_two_task_sequence')
    code = f'''
import sys, torch
from mmengine.config import Config
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
register_all_modules()
cfg = Config.fromfile({osp.join(REPO, 'configs', '_base_', 'models',
                                 'deformable-detr_r18-tiny.py')!r})
model = MODELS.build(cfg.model)
state = torch.load({merged!r}, weights_only=True)['state_dict']
model.load_state_dict(state, strict=True)
assert type(model).__name__ == 'DeformableDETR'
assert not any(m.startswith('gslora_det') for m in sys.modules)
print('stock-ok')
'''
    proc = subprocess.run([sys.executable, '-c', code], cwd=workspace,
                          capture_output=True, text=True, timeout=300)
    assert 'stock-ok' in proc.stdout, proc.stderr[-3000:]

    # and tools/test.py measures forgetting on it with the base config
    out = osp.join(run, 'test_merged.json')
    run_tool('test.py', PRETRAIN_CFG, merged, '--forget-classes',
             'blue_triangle', 'orange_star', '--before',
             osp.join(run, 'task_1', 'before_metrics.json'), '--out', out,
             '--work-dir', osp.join(run, 'test_merged'),
             '--cfg-options', 'test_dataloader.num_workers=0',
             'test_dataloader.persistent_workers=False', cwd=workspace)
    with open(out) as f:
        metrics = json.load(f)
    with open(osp.join(run, 'task_1', 'forget_report.json')) as f:
        report = json.load(f)
    assert metrics['forgetting/mAP_forget'] == pytest.approx(
        report['mAP_forget_after'], abs=2e-3)
    assert 'forgetting/h_mean' in metrics
