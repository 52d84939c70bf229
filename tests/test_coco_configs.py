"""The COCO 7 x 10 protocol and the R50 configs."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from conftest import CONFIGS
from gslora_det.data.coco_protocol import (coco_forget_order,
                                           coco_previously_forgotten,
                                           coco_task_classes)

# Copied from the method's specification (shared/method.md, section 4).
SPEC_TASKS = [
    'microwave, skateboard, umbrella, banana, sports ball, book, apple, '
    'couch, horse, keyboard',
    'truck, sandwich, toilet, chair, scissors, bottle, car, cell phone, '
    'cake, orange',
    'baseball bat, tie, skis, bear, kite, tennis racket, hot dog, suitcase, '
    'baseball glove, cup',
    'fire hydrant, broccoli, stop sign, person, bus, fork, motorcycle, '
    'wine glass, parking meter, donut',
    'cow, toaster, train, laptop, carrot, cat, sink, sheep, bench, zebra',
    'bicycle, backpack, remote, bowl, dining table, elephant, bird, clock, '
    'dog, handbag',
    'traffic light, surfboard, vase, frisbee, refrigerator, toothbrush, tv, '
    'hair drier, spoon, giraffe',
]
SPEC_KEPT = ('mouse, potted plant, bed, airplane, oven, pizza, snowboard, '
             'teddy bear, boat, knife')
REF_BETAS = [0.015, 0.03, 0.14, 0.13, 0.13, 0.15, 0.15]


def names(line):
    return [n.strip() for n in line.split(',')]


@pytest.mark.parametrize('task', range(1, 8))
def test_computed_order_matches_the_specification(task):
    assert coco_task_classes(task) == names(SPEC_TASKS[task - 1])


def test_kept_classes_and_no_overlap():
    order = coco_forget_order()
    assert order[:10] == names(SPEC_KEPT)
    all_forgotten = [c for t in range(1, 8) for c in coco_task_classes(t)]
    assert len(set(all_forgotten)) == 70
    assert not set(all_forgotten) & set(order[:10])


@pytest.mark.parametrize('task', range(1, 8))
def test_task_configs_hold_the_protocol(task):
    cfg = Config.fromfile(
        osp.join(CONFIGS, 'coco', f'gslora_deformable-detr_r50_task{task}'
                 '_coco.py'))
    assert cfg.forget_task.index == task
    assert list(cfg.forget_task.forget_classes) == coco_task_classes(task)
    assert list(cfg.forget_task.previously_forgotten) == \
        coco_previously_forgotten(task)
    assert cfg.model.forget_cfg.beta == REF_BETAS[task - 1]
    # the reference's constants
    assert cfg.model.forget_cfg.bound == 15.0
    assert cfg.model.group_lasso_cfg.alpha == 3e-4
    assert cfg.model.lora_cfg.rank == 8
    assert cfg.optim_wrapper.optimizer.lr == 3e-4
    assert cfg.optim_wrapper.clip_grad.max_norm == 0.1
    assert cfg.train_cfg.max_epochs == 30


@pytest.fixture(scope='module')
def r50_gslora():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    import gslora_det  # noqa: F401
    cfg = Config.fromfile(
        osp.join(CONFIGS, 'coco', 'gslora_deformable-detr_r50_task1_coco.py'))
    return MODELS.build(cfg.model)


def test_r50_targets_are_exactly_the_24_ffn_linears(r50_gslora):
    from gslora_det.lora import LoRALinear
    names_ = [n for n, m in r50_gslora.named_modules()
              if isinstance(m, LoRALinear)]
    expected = [f'{part}.layers.{i}.ffn.layers.{j}'
                for part in ('encoder', 'decoder') for i in range(6)
                for j in ('0.0', '1')]
    assert sorted(names_) == sorted(expected)
    assert len(r50_gslora.group_names) == 12
    trainable = sum(p.numel() for p in r50_gslora.parameters()
                    if p.requires_grad)
    assert trainable == 12 * 2 * 8 * (256 + 1024) == 245760
    assert all('lora_' in n for n, p in r50_gslora.named_parameters()
               if p.requires_grad)


def test_r50_coco_config_builds_and_runs_a_forward_pass():
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(
        osp.join(CONFIGS, 'coco', 'deformable-detr_r50_16xb2-50e_coco.py'))
    cfg.model.backbone.init_cfg = None  # no download in tests
    model = MODELS.build(cfg.model).eval()
    assert type(model).__name__ == 'DeformableDETR'
    sample = DetDataSample(metainfo=dict(
        img_shape=(160, 192), ori_shape=(160, 192), batch_input_shape=(160,
                                                                       192),
        scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 160, 192), [sample], mode='predict')
    pred = out[0].pred_instances
    assert pred.bboxes.shape == (100, 4) and pred.labels.max() < 80
