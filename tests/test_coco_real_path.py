"""The real path, on the COCO-shaped stand-in: the COCO task configs, a
model-zoo style checkpoint, and every entry point a user has.

The stand-in (``coco_standin``) has COCO's 80 classes with COCO's category
ids and the layout of ``data/coco``; the checkpoint (``zoo_checkpoint``) is
mmdet's R50 Deformable DETR with random weights, published through mmdet's
``publish_model.py``. Only data and weights are stand-ins. The task configs
are the real ones; runs here inherit them and only shrink the images to
64 px (the stand-in's own size; plumbing, not accuracy, is tested here) and
the schedule to one epoch (R50 runs on the CPU).
"""
import copy
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
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys={meta!r})]
_test = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
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
    """The real task config with 64-px images (written into ``folder``)."""
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
COCO_CONFIGS = sorted(
    [f for f in os.listdir(osp.join(CONFIGS, 'coco')) if f.endswith('.py')] +
    [f'default/{f}' for f in os.listdir(osp.join(CONFIGS, 'coco', 'default'))
     if f.endswith('.py')])


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
# This repo's tools/train.py runs both tasks of the sequence below.
@pytest.fixture(scope='module')
def coco_sequence(coco_standin, zoo_checkpoint):
    """Tasks 1 and 2 of the 7 x 10 protocol via tools/forget_sequence.py."""
    cfgs = [small_config(coco_standin, k) for k in (1, 2)]
    run = osp.join(str(coco_standin), 'work_dirs', 'coco_seq')
    proc = run_tool('forget_sequence.py', *cfgs, '--base-checkpoint',
                    zoo_checkpoint, '--work-dir', run, '--cfg-options',
                    'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                    cwd=coco_standin)
    return run, proc.stdout + proc.stderr


@pytest.mark.slow
def test_coco_sequence_chains_tasks(coco_sequence, zoo_checkpoint):
    from gslora_det.checkpoint import sha256_file
    run, log = coco_sequence
    reports = [check_task_outputs(osp.join(run, f'task_{k}'), k)
               for k in (1, 2)]
    assert 'pre-flight:' in log
    inputs = [zoo_checkpoint, osp.join(run, 'task_1', 'merged.pth')]
    for k, report in zip((1, 2), reports):
        assert report['input_checkpoint_sha256'] == sha256_file(inputs[k - 1])
    # task 2: a fresh LoRA at the later-task init gain
    assert reports[0]['lora_init'] == dict(task_index=1,
                                           init_a_gain=pytest.approx(5**.5))
    assert reports[1]['lora_init'] == dict(task_index=2,
                                           init_a_gain=pytest.approx(50**.5))
    assert reports[1]['previously_forgotten'] == reports[0]['forget_classes']


def _detections(path):
    """image id -> detections sorted by score (highest first)."""
    with open(path) as f:
        dets = json.load(f)
    by_image = {}
    for d in dets:
        by_image.setdefault(d['image_id'], []).append(d)
    return {k: sorted(v, key=lambda d: -d['score'])
            for k, v in by_image.items()}


@pytest.mark.slow
def test_task2_before_equals_task1_after(coco_sequence):
    """A fresh LoRA changes nothing and merging is exact: the merged model
    of task 1 plus task 2's new LoRA predicts what task 1's LoRA model did.
    (Predictions, not mAPs, which are ~0 with random weights.)"""
    run, _ = coco_sequence
    after1 = _detections(osp.join(run, 'task_1', 'after_predictions.bbox.json'))
    before2 = _detections(osp.join(run, 'task_2',
                                   'before_predictions.bbox.json'))
    assert after1.keys() == before2.keys() and after1
    for image, dets in after1.items():
        # The top detections of each image (random weights give near-ties
        # further down, which float rounding of the merge may reorder).
        for a, b in zip(dets[:10], before2[image][:10]):
            assert a['category_id'] == b['category_id']
            assert a['score'] == pytest.approx(b['score'], abs=1e-4)
            assert a['bbox'] == pytest.approx(b['bbox'], abs=1e-2)


@pytest.mark.slow
def test_merged_checkpoints_load_into_stock_mmdet(coco_sequence,
                                                  zoo_checkpoint):
    """Each merged.pth loads with strict=True into mmdet's own
    DeformableDETR and gives the outputs of its task's LoRA model (input
    checkpoint + adapter)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from gslora_det.adapter import load_adapter
    from gslora_det.checkpoint import load_checkpoint_safely, state_dict_of
    register_all_modules()
    run, _ = coco_sequence
    base = Config.fromfile(COCO_BASE)
    base.model.backbone.init_cfg = None
    inputs = [zoo_checkpoint, osp.join(run, 'task_1', 'merged.pth')]
    x = torch.rand(1, 3, 96, 128)
    for k in (1, 2):
        folder = osp.join(run, f'task_{k}')
        # mmdet's DETR constructors edit their bbox_head config in place.
        stock = MODELS.build(copy.deepcopy(base.model)).eval()
        merged = load_checkpoint_safely(osp.join(folder, 'merged.pth'))
        stock.load_state_dict(state_dict_of(merged), strict=True)
        lora = MODELS.build(Config.fromfile(task_config(k)).model).eval()
        lora.load_state_dict(state_dict_of(
            load_checkpoint_safely(inputs[k - 1])), strict=False)
        adapter, _ = load_adapter(osp.join(folder, 'adapter.safetensors'))
        missing = lora.load_state_dict(adapter, strict=False)
        assert not [m for m in missing.unexpected_keys]
        with torch.no_grad():
            out = [m.forward_transformer(m.extract_feat(x), _samples(x))
                   ['hidden_states'] for m in (stock, lora)]
        torch.testing.assert_close(out[0], out[1], atol=1e-4, rtol=1e-4)


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
             '--metrics-out', out, '--cfg-options',
             'test_dataloader.dataset.pipeline.1.scale=(64,64)',
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


# -- slow: 2 processes, epoch-based ------------------------------------------
@pytest.mark.slow
def test_two_processes_epoch_based_coco_task(coco_standin, zoo_checkpoint):
    """The epoch-based COCO task with 2 processes (gloo on the CPU) ends
    (no hang: every rank draws the same number of batches and reaches the
    same collectives), with identical LoRA weights on both ranks (each rank
    logs the digest, ``check_ranks_agree`` compares them) and one set of
    outputs."""
    import glob
    import re
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    cfg = small_config(coco_standin, 1)
    work = osp.join(str(coco_standin), 'work_dirs', 'two_procs')
    env = dict(_env(), PYTHON=sys.executable, PORT=str(port),
               CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg, '2',
         '--work-dir', work, '--cfg-options', *one_epoch(zoo_checkpoint),
         'log_level=DEBUG', 'default_hooks.logger.interval=1'],
        cwd=coco_standin, env=env, capture_output=True, text=True,
        timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_task_outputs(work)
    logs = {}
    for path in glob.glob(osp.join(work, '*', '*_rank*.log')):
        with open(path) as f:
            logs[int(re.search(r'rank(\d+)\.log$', path).group(1))] = f.read()
    assert sorted(logs) == [0, 1]
    digests = {r: re.findall(r'LoRA weights sha256 (\w+) on rank', t)
               for r, t in logs.items()}
    assert digests[0] and digests[0] == digests[1]
    steps = {r: re.findall(r'Epoch\(train\)\s+\[1\]\[\s*(\d+)/(\d+)\]', t)
             for r, t in logs.items()}
    assert steps[0] and steps[0] == steps[1]
    last, total = steps[0][-1]
    assert last == total  # __len__ is exact: the epoch ends where it says
    assert len(glob.glob(osp.join(work, 'merged.pth'))) == 1
