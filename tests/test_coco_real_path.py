"""The real path, on the COCO-shaped stand-in: the COCO task configs, a
model-zoo style checkpoint, and every entry point a user has.

The stand-in (``coco_standin``) has COCO's 80 classes with COCO's category
ids and the layout of ``data/coco``; the checkpoint (``zoo_checkpoint``) is
mmdet's R50 Deformable DETR with random weights, published through mmdet's
``publish_model.py``. Only data and weights are stand-ins. The task configs
are the real ones; runs here inherit them and only shrink the images to
128 px and the schedule to one epoch (R50 runs on the CPU).
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from conftest import CONFIGS, REPO, run_tool

COCO_BASE = osp.join(CONFIGS, 'coco', 'deformable-detr_r50_16xb2-50e_coco.py')
META = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
        'flip', 'flip_direction', 'forget_role', 'forget_labels')
SMALL_IMAGES = '''
_base_ = [{base!r}]
_train = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys={meta!r})]
_test = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys={meta!r}[:5])]
_split = dict(type='ForgetRetainCocoDataset', data_root='data/coco/',
              ann_file='annotations/instances_train2017.json',
              data_prefix=dict(img='train2017/'), pipeline=_train)
train_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(datasets=[dict(role='retain', **_split),
                           dict(role='forget', **_split)]))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(pipeline=_test))
test_dataloader = val_dataloader
'''


def task_config(task: int) -> str:
    return osp.join(CONFIGS, 'coco',
                    f'gslora_deformable-detr_r50_task{task}_coco.py')


def small_config(folder, task: int) -> str:
    """The real task config with 128-px images (written into ``folder``)."""
    path = osp.join(str(folder), f'small_task{task}_coco.py')
    with open(path, 'w') as f:
        f.write(SMALL_IMAGES.format(base=task_config(task), meta=META))
    return path


def one_epoch(checkpoint: str):
    return [f'load_from={checkpoint}', 'train_cfg.max_epochs=1',
            'train_cfg.val_interval=1']


def check_task_outputs(work_dir: str, task: int = 1) -> dict:
    from gslora_det.data.coco_protocol import coco_task_classes
    with open(osp.join(work_dir, 'forget_report.json')) as f:
        report = json.load(f)
    assert report['task'] == task
    assert report['forget_classes'] == coco_task_classes(task)
    assert len(report['retained_classes']) == 80 - 10 * task
    for name in ('merged.pth', 'manifest.json'):
        assert osp.isfile(osp.join(work_dir, name)), name
    return report


# -- fast: every COCO config parses, resolves its task or builds its model --
COCO_CONFIGS = sorted(f for f in os.listdir(osp.join(CONFIGS, 'coco'))
                      if f.endswith('.py'))


@pytest.fixture
def coco_json_only(tmp_path, monkeypatch):
    """A stand-in ``data/coco`` with annotation files only (fast)."""
    from gslora_det.data.coco_standin import make_coco_standin
    make_coco_standin(str(tmp_path / 'data' / 'coco'), num_train=120,
                      num_val=40, write_images=False, progress=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize('name', COCO_CONFIGS)
def test_every_coco_config_resolves(name, coco_json_only):
    from gslora_det.task import resolve_task
    cfg = Config.fromfile(osp.join(CONFIGS, 'coco', name))
    if cfg.get('forget_task') is not None:
        task = resolve_task(cfg)
        assert len(task['classes']) == 80
        assert len(task['forget']) == 10
        assert len(task['retain']) == 80 - 10 * task['index']
        # the loops carry the task on every entry point
        assert cfg.train_cfg.type.startswith('Forget')
        assert cfg.val_cfg.type == 'ForgetValLoop'
        assert cfg.test_cfg.type == 'ForgetTestLoop'
    else:
        from gslora_det.config_checks import _build_model
        model = _build_model(cfg)
        assert model.bbox_head.num_classes == 80


def test_classes_come_from_metainfo_only_when_the_file_matches(
        coco_json_only):
    from gslora_det.config_checks import ConfigError
    from gslora_det.task import dataset_classes
    cfg = Config.fromfile(task_config(1))
    assert len(dataset_classes(cfg)) == 80
    path = 'data/coco/annotations/instances_train2017.json'
    with open(path) as f:
        coco = json.load(f)
    coco['categories'][3]['name'] = 'my_own_class'
    with open(path, 'w') as f:
        json.dump(coco, f)
    with pytest.raises(ConfigError, match='my_own_class.*METAINFO'):
        dataset_classes(cfg)


def test_declared_classes_must_follow_the_file_order(coco_json_only):
    from gslora_det.config_checks import (ConfigError,
                                          check_classes_in_annotations)
    cfg = Config.fromfile(COCO_BASE)
    cfg.train_dataloader.dataset.metainfo = dict(classes=('car', 'person'))
    with pytest.raises(ConfigError, match="file's order"):
        check_classes_in_annotations(cfg, ['train'])
    cfg.train_dataloader.dataset.metainfo = dict(classes=('person', 'car'))
    check_classes_in_annotations(cfg, ['train'])


# -- slow: one task config through each entry point --------------------------
@pytest.mark.slow
def test_task_config_through_this_repos_train(coco_standin, zoo_checkpoint):
    cfg = small_config(coco_standin, 1)
    work = osp.join(str(coco_standin), 'work_dirs', 'repo_train')
    proc = run_tool('train.py', cfg, '--work-dir', work, '--cfg-options',
                    *one_epoch(zoo_checkpoint), cwd=coco_standin)
    check_task_outputs(work)
    assert 'pre-flight:' in proc.stdout + proc.stderr


def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    return env


@pytest.mark.slow
def test_task_config_through_mmdets_own_train(coco_standin, zoo_checkpoint):
    import mmdet
    script = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools',
                      'train.py')
    cfg = small_config(coco_standin, 1)
    work = osp.join(str(coco_standin), 'work_dirs', 'mmdet_train')
    proc = subprocess.run(
        [sys.executable, script, cfg, '--work-dir', work, '--cfg-options',
         *one_epoch(zoo_checkpoint)], cwd=coco_standin, env=_env(),
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_task_outputs(work)


@pytest.mark.slow
def test_task_config_through_runner_from_cfg(coco_standin, zoo_checkpoint):
    cfg = small_config(coco_standin, 1)
    work = osp.join(str(coco_standin), 'work_dirs', 'from_cfg')
    options = dict(o.split('=', 1) for o in one_epoch(zoo_checkpoint))
    options['train_cfg.max_epochs'] = 1
    options['train_cfg.val_interval'] = 1
    code = ('import sys\n'
            'from mmengine.config import Config\n'
            'from mmengine.runner import Runner\n'
            'cfg = Config.fromfile(sys.argv[1])\n'
            f'cfg.merge_from_dict({options!r})\n'
            'cfg.work_dir = sys.argv[2]\n'
            'Runner.from_cfg(cfg).train()\n')
    proc = subprocess.run([sys.executable, '-c', code, cfg, work],
                          cwd=coco_standin, env=_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_task_outputs(work)


@pytest.mark.slow
def test_test_py_forget_classes_on_the_coco_base_config(coco_standin,
                                                        zoo_checkpoint):
    out = osp.join(str(coco_standin), 'base_metrics.json')
    run_tool('test.py', COCO_BASE, zoo_checkpoint, '--forget-classes',
             'banana', 'apple', '--previously-forgotten', 'horse',
             '--out', out, '--cfg-options',
             'test_dataloader.dataset.pipeline.1.scale=(128,128)',
             'test_dataloader.num_workers=0',
             'test_dataloader.persistent_workers=False', cwd=coco_standin)
    with open(out) as f:
        metrics = json.load(f)
    assert 'forgetting/mAP_forget' in metrics
    assert 'forgetting/mAP_old' in metrics


def test_merged_checkpoint_loads_strictly_into_stock_mmdet():
    """A merged state dict is a stock ``DeformableDETR``'s, key for key."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from gslora_det.inject import merged_state_dict
    from gslora_det.lora import lora_modules
    register_all_modules()
    cfg = Config.fromfile(task_config(2))
    torch.manual_seed(0)
    lora = MODELS.build(cfg.model).eval()
    lora.init_weights()
    for _, m in lora_modules(lora):  # a trained, non-zero adapter
        torch.nn.init.normal_(m.lora_B, std=0.02)
    base = Config.fromfile(COCO_BASE)
    base.model.backbone.init_cfg = None
    stock = MODELS.build(base.model).eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        feats_lora = lora.forward_transformer(lora.extract_feat(x),
                                              _samples(x))
        stock.load_state_dict(merged_state_dict(lora), strict=True)
        feats_stock = stock.forward_transformer(stock.extract_feat(x),
                                                _samples(x))
    torch.testing.assert_close(feats_stock['hidden_states'],
                               feats_lora['hidden_states'], atol=1e-4,
                               rtol=1e-4)


def _samples(x):
    from mmdet.structures import DetDataSample
    h, w = x.shape[-2:]
    return [DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), batch_input_shape=(h, w),
        scale_factor=(1.0, 1.0)))]
