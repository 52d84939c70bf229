"""The tiny detector through mmdet's own machinery: a few training
iterations with a falling loss, CocoMetric evaluation, checkpoints that a
weights-only torch.load reads, and resume after an interrupted run."""
import glob
import json
import os.path as osp

import torch

from conftest import PRETRAIN_CFG, run_tool

# 48 images / batch 4 = 12 iterations an epoch.
SMALL = ['train_dataloader.batch_size=4', 'default_hooks.logger.interval=1',
         'train_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False',
         'val_dataloader.num_workers=0',
         'val_dataloader.persistent_workers=False']


def scalars(work_dir):
    """Every line of mmengine's scalar log, as dicts."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    rows = []
    for path in files:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def test_train_evaluate_interrupt_and_resume(workspace):
    work = osp.join(str(workspace), 'work_dirs', 'pretrain_resume')
    # "Interrupted" run: stops after epoch 1 of 2.
    run_tool('train.py', PRETRAIN_CFG, '--work-dir', work, '--cfg-options',
             'train_cfg.max_epochs=1', *SMALL, cwd=workspace)
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    # The checkpoint holds the message hub's HistoryBuffers: the
    # weights-only unpickler reads it once gslora_det is imported.
    import gslora_det  # noqa: F401
    ckpt = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=True)
    assert ckpt['meta']['epoch'] == 1 and 'message_hub' in ckpt

    proc = run_tool('train.py', PRETRAIN_CFG, '--work-dir', work, '--resume',
                    '--cfg-options', 'train_cfg.max_epochs=2', *SMALL,
                    cwd=workspace)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 1' in log, log[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))
    rows = scalars(work)
    train = [r for r in rows if 'loss' in r]
    # resumed: iterations continue at 13, none is trained twice
    steps = [r['step'] for r in train]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == 24
    first = sum(r['loss'] for r in train[:4]) / 4
    last = sum(r['loss'] for r in train[-4:]) / 4
    assert last < first, (first, last)
    # CocoMetric ran after each epoch
    vals = [r for r in rows if 'coco/bbox_mAP' in r]
    assert len(vals) == 2 and all(0 <= r['coco/bbox_mAP'] <= 1 for r in vals)

    # tools/test.py evaluates the checkpoint with CocoMetric
    proc = run_tool('test.py', PRETRAIN_CFG, osp.join(work, 'epoch_2.pth'),
                    '--work-dir', osp.join(work, 'test'), '--metrics-out',
                    osp.join(work, 'test.json'), cwd=workspace)
    with open(osp.join(work, 'test.json')) as f:
        metrics = json.load(f)
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
