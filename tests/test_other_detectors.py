"""GS-LoRA on mmdet's DINO, DETR and Conditional DETR (tiny shapes models):
LoRA placement, what trains, the loss keys, strict loading of the merged
weights into the stock class, and one real DINO forgetting task."""
import copy
import json
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

import gslora_det  # noqa: F401
from conftest import CONFIGS, TINY_TASK, run_tool
from gslora_det.inject import merged_state_dict
from gslora_det.lora import LoRALinear
from test_detector import batch

register_all_modules()

# name -> (GS-LoRA class, stock class)
DETECTORS = {
    'dino': ('GSLoRADINO', 'DINO'),
    'detr': ('GSLoRADETR', 'DETR'),
    'conditional-detr': ('GSLoRAConditionalDETR', 'ConditionalDETR'),
}
FFN_LINEARS = sorted(f'{p}.layers.{i}.ffn.layers.{j}'
                     for p in ('encoder', 'decoder') for i in range(3)
                     for j in ('0.0', '1'))


def task_cfg(name):
    return osp.join(CONFIGS, 'shapes',
                    f'gslora_{name}_r18-tiny_task1_shapes.py')


def pretrain_cfg(name):
    return osp.join(CONFIGS, 'shapes', f'{name}_r18-tiny_5e_shapes.py')


def build(path, seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(Config.fromfile(path).model)
    model.init_weights()
    return model


@pytest.mark.parametrize('name', DETECTORS)
def test_tiny_forgetting_steps(name):
    """A few loss/backward/step iterations: only LoRA changes, the loss has
    the GS-LoRA terms, the merged weights load strictly into the stock
    class and give the same outputs as the LoRA model."""
    gs_cls, stock_cls = DETECTORS[name]
    model = build(task_cfg(name))
    assert type(model).__name__ == gs_cls
    names = sorted(n for n, m in model.named_modules()
                   if isinstance(m, LoRALinear))
    assert names == FFN_LINEARS
    assert model.group_names == [f'encoder.layers.{i}' for i in range(3)] + \
        [f'decoder.layers.{i}' for i in range(3)]
    assert not any(m.lora_B.any() for m in model.modules()
                   if isinstance(m, LoRALinear))

    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(2):
        losses = model.loss(*batch())
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        optim.step()
        optim.zero_grad()
    for key in ('r.loss_cls', 'r.loss_bbox', 'r.loss_iou', 'f.loss_bound',
                'f.loss_bbox', 'f.loss_iou', 'f.cls', 'loss_group_lasso'):
        assert key in losses, key
    assert len([k for k in losses if k.startswith('gn.')]) == 6
    assert not any('dn' in k or k.startswith('d0.') for k in losses)
    if name == 'dino':  # the retain images' encoder proposal loss
        assert {'enc.r.loss_cls', 'enc.r.loss_bbox',
                'enc.r.loss_iou'} <= set(losses)
    changed = {k for k, v in model.state_dict().items()
               if not torch.equal(before[k], v)}
    assert any(k.endswith('lora_B') for k in changed)
    assert all('lora_' in k for k in changed), sorted(changed)[:5]

    stock = MODELS.build(Config.fromfile(pretrain_cfg(name)).model)
    assert type(stock).__name__ == stock_cls
    stock.load_state_dict(merged_state_dict(model), strict=True)
    x, samples = batch()
    model.eval(), stock.eval()
    with torch.no_grad():
        a = model(x, copy.deepcopy(samples), mode='tensor')
        b = stock(x, copy.deepcopy(samples), mode='tensor')
    for ta, tb in zip(a, b):
        assert torch.allclose(ta, tb, atol=1e-4), (ta - tb).abs().max()


def test_dino_forgetting_loss_uses_matching_queries_only():
    model = build(task_cfg('dino'))
    model.train()
    x, samples = batch()
    all_cls, all_box, hidden, head_inputs = model._forward_outputs(
        x, samples)
    assert head_inputs['dn_meta']['num_denoising_queries'] > 0
    nq = model.num_queries
    assert all_cls.shape[:3] == (3, 2, nq) and all_box.shape[:3] == (3, 2,
                                                                     nq)
    assert hidden.shape[:3] == (3, 2, nq)
    off = build(task_cfg('dino')).train()
    off.forget_cfg['retain_enc_loss'] = False
    assert not any(k.startswith('enc.') for k in off.loss(*batch()))


def test_deformable_detr_still_refuses_two_stage():
    cfg = Config.fromfile(
        osp.join(CONFIGS, 'shapes',
                 'gslora_deformable-detr_r18-tiny_task1_shapes.py')).model
    cfg.as_two_stage = True
    with pytest.raises(NotImplementedError, match='GSLoRADINO'):
        MODELS.build(cfg)


def test_dino_forgetting_task_through_train_py(workspace):
    """Pretrain the tiny DINO for a few iterations, then run one tiny
    forgetting task through tools/train.py."""
    from gslora_det.checkpoint import (load_checkpoint_safely,
                                       save_checkpoint_atomic)
    pre = osp.join(str(workspace), 'work_dirs', 'dino_pre')
    run_tool('train.py', pretrain_cfg('dino'), '--work-dir', pre,
             '--cfg-options', 'train_cfg.max_epochs=1',
             'train_dataloader.batch_size=8',
             'train_dataloader.num_workers=0',
             'train_dataloader.persistent_workers=False',
             'val_dataloader.num_workers=0',
             'val_dataloader.persistent_workers=False', cwd=workspace)
    ckpt = load_checkpoint_safely(osp.join(pre, 'epoch_1.pth'))
    base = osp.join(pre, 'base.pth')
    save_checkpoint_atomic(dict(meta=ckpt['meta'],
                                state_dict=ckpt['state_dict']), base)
    work = osp.join(str(workspace), 'work_dirs', 'dino_task1')
    run_tool('train.py', task_cfg('dino'), '--work-dir', work,
             '--cfg-options', f'load_from={base}', *TINY_TASK,
             cwd=workspace)
    with open(osp.join(work, 'forget_report.json')) as f:
        report = json.load(f)
    assert report['task'] == 1 and report['method'] == 'gslora'
    assert len(report['group_norms']) == 6
    # 2 linears x rank 8 x (256 + 512) per layer, 6 layers
    assert report['trainable_params'] == 6 * 2 * 8 * (256 + 512)
    for key in ('mAP_forget_before', 'mAP_forget_after',
                'mAP_retain_before', 'mAP_retain_after'):
        assert 0 <= report[key] <= 1
    merged = load_checkpoint_safely(osp.join(work, 'merged.pth'))
    stock = MODELS.build(Config.fromfile(pretrain_cfg('dino')).model)
    stock.load_state_dict(merged['state_dict'], strict=True)
    key = 'encoder.layers.0.ffn.layers.1.weight'
    assert not torch.equal(merged['state_dict'][key],
                           ckpt['state_dict'][key])


# -- COCO configs ----------------------------------------------------------
# task config, mmdet reference config, GS-LoRA class, stock class
COCO = {
    'dino': ('gslora_dino-4scale_r50_task1_coco.py',
             'dino-4scale_r50_8xb2-12e_coco.py', 'GSLoRADINO', 'DINO'),
    'detr': ('gslora_detr_r50_task1_coco.py', 'detr_r50_8xb2-150e_coco.py',
             'GSLoRADETR', 'DETR'),
}


@pytest.mark.parametrize('name', COCO)
def test_coco_task1_config_targets_and_matches_mmdet(name):
    """The R50 model builds with LoRA on exactly the 24 FFN linears, the
    task holds the protocol, and the architecture copied into
    configs/_base_/models/ still is mmdet's (merged weights load strictly
    into the model of the mmdet:: reference config)."""
    from gslora_det.data.coco_protocol import coco_task_classes
    task, ref, gs_cls, stock_cls = COCO[name]
    cfg = Config.fromfile(osp.join(CONFIGS, 'coco', task))
    assert list(cfg.forget_task.forget_classes) == coco_task_classes(1)
    assert cfg.model.forget_cfg.bound == 15.0
    assert cfg.model.lora_cfg.rank == 8
    assert cfg.load_from.startswith('checkpoints/')
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == gs_cls
    names = sorted(n for n, m in model.named_modules()
                   if isinstance(m, LoRALinear))
    assert names == sorted(f'{p}.layers.{i}.ffn.layers.{j}'
                           for p in ('encoder', 'decoder') for i in range(6)
                           for j in ('0.0', '1'))
    assert len(model.group_names) == 12
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == 12 * 2 * 8 * (256 + 2048)
    ref_cfg = Config.fromfile(osp.join(CONFIGS, 'coco', ref))
    ref_cfg.model.backbone.init_cfg = None  # no download in tests
    stock = MODELS.build(ref_cfg.model)
    assert type(stock).__name__ == stock_cls
    stock.load_state_dict(merged_state_dict(model), strict=True)
