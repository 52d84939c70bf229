"""Bad input fails before training with a message naming problem and fix."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from conftest import PRETRAIN_CFG, TASK_CFGS, run_tool
from gslora_det.config_checks import ConfigError, prepare_config


def task_cfg(workspace, forget, previous=(), path=TASK_CFGS[0]):
    cfg = Config.fromfile(path)
    cfg.forget_task.forget_classes = list(forget)
    cfg.forget_task.previously_forgotten = list(previous)
    return cfg


@pytest.fixture(autouse=True)
def in_workspace(workspace, monkeypatch):
    monkeypatch.chdir(workspace)


@pytest.mark.parametrize('forget,previous,match', [
    (['purple_cow'], [], "unknown class name.*'purple_cow'.*Valid names "
     "are: \\['red_circle'"),
    (['red_circle', 'red_circle'], [], 'named more than once'),
    (['red_circle'], ['red_circle'], 'in both forget_classes and '
     'previously_forgotten'),
    ([], [], 'forget_classes is empty'),
    (['red_circle', 'green_square', 'blue_triangle', 'yellow_diamond'], [
        'magenta_cross', 'cyan_ring', 'orange_star', 'white_hexagon'
    ], 'forget every class'),
])
def test_bad_task_class_lists(workspace, forget, previous, match):
    with pytest.raises(ConfigError, match=match):
        prepare_config(task_cfg(workspace, forget, previous))


def test_good_task_fills_datasets_metric_and_model(workspace):
    cfg = task_cfg(workspace, ['red_circle'], ['cyan_ring'],
                   path=TASK_CFGS[1])
    prepare_config(cfg)
    splits = cfg.train_dataloader.dataset.datasets
    assert [d.role for d in splits] == ['retain', 'forget']
    assert all(d.forget_classes == ['red_circle'] for d in splits)
    assert all(d.previously_forgotten == ['cyan_ring'] for d in splits)
    assert cfg.val_evaluator.forget_classes == ['red_circle']
    assert cfg.model.task_index == 2


def test_checkpoint_with_another_class_count(workspace, tmp_path):
    ckpt = str(tmp_path / 'five_classes.pth')
    torch.save({'state_dict': {
        'bbox_head.cls_branches.0.weight': torch.zeros(5, 128)}}, ckpt)
    cfg = task_cfg(workspace, ['red_circle'])
    cfg.load_from = ckpt
    with pytest.raises(ConfigError, match='has 5 classes.*config has 8'):
        prepare_config(cfg)


def test_missing_data_root_and_annotation_file(workspace):
    cfg = Config.fromfile(PRETRAIN_CFG)
    cfg.train_dataloader.dataset.data_root = 'nowhere/'
    with pytest.raises(ConfigError, match="data root 'nowhere/' does not "
                       'exist'):
        prepare_config(cfg)
    cfg = Config.fromfile(PRETRAIN_CFG)
    cfg.val_dataloader.dataset.ann_file = 'annotations/missing.json'
    with pytest.raises(ConfigError, match='missing.json.*does not exist'):
        prepare_config(cfg)


def test_config_class_not_in_annotations(workspace):
    cfg = Config.fromfile(PRETRAIN_CFG)
    cfg.val_dataloader.dataset.metainfo = dict(classes=('red_circle',
                                                        'purple_cow'))
    with pytest.raises(ConfigError, match="'purple_cow'.*Valid names are"):
        prepare_config(cfg, mode='train')


def test_train_tool_reports_bad_class_without_traceback(workspace):
    proc = run_tool(
        'train.py', TASK_CFGS[0], '--work-dir', 'work_dirs/bad',
        '--cfg-options', 'forget_task.forget_classes=[purple_cow]',
        cwd=workspace, check=False, timeout=120)
    assert proc.returncode != 0
    assert 'unknown class name' in proc.stderr
    assert 'red_circle' in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not osp.exists(osp.join(workspace, 'work_dirs', 'bad',
                                   'last_checkpoint'))


def test_proximal_mode_needs_its_optimiser_wrapper():
    from mmengine.config import Config

    from gslora_det.config_checks import check_optim_wrapper
    cfg = Config(dict(model=dict(group_lasso_cfg=dict(mode='proximal')),
                      optim_wrapper=dict(type='OptimWrapper')))
    with pytest.raises(ConfigError, match='ProximalGroupLassoOptimWrapper'):
        check_optim_wrapper(cfg)
    cfg.optim_wrapper.type = 'ProximalGroupLassoOptimWrapper'
    check_optim_wrapper(cfg)
    cfg.model.group_lasso_cfg.mode = 'penalty'
    cfg.optim_wrapper.type = 'OptimWrapper'
    check_optim_wrapper(cfg)


def test_forgetting_default_switches_to_the_proximal_wrapper():
    from mmengine.config import Config

    from gslora_det.config_checks import check_optim_wrapper
    from gslora_det.forgetting_setup import forgetting_optim_wrapper
    plain = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
    cfg = Config(dict(model=dict(group_lasso_cfg=dict(mode='proximal')),
                      optim_wrapper=dict(type='OptimWrapper'),
                      forgetting=dict(optim_wrapper=plain)))
    check_optim_wrapper(cfg)  # the task's wrapper is switched: no error
    wrapper = forgetting_optim_wrapper(cfg.forgetting, cfg.model)
    assert wrapper['type'] == 'ProximalGroupLassoOptimWrapper'
    assert wrapper['optimizer'] == plain['optimizer']
    assert plain['type'] == 'OptimWrapper'  # the config is not modified
    cfg.model.group_lasso_cfg.mode = 'penalty'
    assert forgetting_optim_wrapper(cfg.forgetting, cfg.model)['type'] == \
        'OptimWrapper'
    # A custom wrapper is the user's choice, and without the prox: refused.
    cfg.model.group_lasso_cfg.mode = 'proximal'
    cfg.forgetting.optim_wrapper.type = 'AmpOptimWrapper'
    with pytest.raises(ConfigError, match='forgetting.optim_wrapper'):
        check_optim_wrapper(cfg)
