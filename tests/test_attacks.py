"""Recovery attacks (gslora_det.attacks, tools/attack.py,
tools/retrain_without.py): image selection, what each attack trains, the
confusion rows, the recovery gap, and the tools end to end."""
import json
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from conftest import PRETRAIN_CFG, REPO, load_script, run_tool
from gslora_det.attacks import (MISSED, AttackSubset, DropClassesDataset,
                                confusion_rows, recovery_gap, run_key)
from gslora_det.attacks.configs import plan, run_cfg
from gslora_det.attacks.gap import recovered
from gslora_det.attacks.report import headline
from gslora_det.attacks.subsets import (AttackDataError, select_k_shot,
                                        select_retain_only)
from gslora_det.config_checks import ConfigError
from gslora_det.data import SHAPES_CLASS_NAMES
from gslora_det.evaluation.residual import residual_detection

FORGET = ['blue_triangle', 'orange_star']  # labels 2 and 6
OLD = ['green_square']  # label 1
DETR_CFG = osp.join(REPO, 'configs', 'shapes', 'detr_r18-tiny_5e_shapes.py')
#: Small and single-process: the attack runs of these tests.
TINY = {'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'val_dataloader.dataset.indices': 4}
TINY_ARGS = [f'{k}={v}' for k, v in TINY.items()]
#: A smaller model and images for the in-process training checks.
SMALL = {'model.encoder.num_layers': 1, 'model.decoder.num_layers': 1,
         'train_dataloader.dataset.pipeline.3.scale': (64, 64),
         'val_dataloader.dataset.pipeline.1.scale': (64, 64)}


# ----------------------------------------------------------- pure selection
def entry(img_id, *labels, crowd=()):
    inst = [dict(bbox=[0, 0, 1, 1], bbox_label=lb, ignore_flag=0)
            for lb in labels]
    inst += [dict(bbox=[0, 0, 1, 1], bbox_label=lb, ignore_flag=1)
             for lb in crowd]
    return dict(img_id=img_id, instances=inst)


def test_retain_only_drops_every_image_showing_a_forgotten_class():
    data = [entry(10, 0, 3), entry(11, 2), entry(12, 0, 6),
            entry(13), entry(14, 4, crowd=[2]), entry(15, 1, 5)]
    # 13 has no object (background stays), 14 shows a crowd of class 2.
    assert select_retain_only(data, [2, 6]) == [0, 3, 5]
    assert select_retain_only(data, [2, 6, 1]) == [0, 3]


def test_k_shot_is_exactly_k_per_class_disjoint_and_seeded():
    rng = np.random.default_rng(0)
    data = [entry(i, *rng.choice(4, size=2, replace=False).tolist())
            for i in range(40)]
    picks = select_k_shot(data, [1, 3], k=3, seed=5)
    assert list(picks) == [1, 3]
    assert all(len(v) == 3 for v in picks.values())
    assert not set(picks[1]) & set(picks[3])  # an image counts once
    for label, idx in picks.items():
        assert all(any(ins['bbox_label'] == label
                       for ins in data[i]['instances']) for i in idx)
    assert select_k_shot(data, [1, 3], k=3, seed=5) == picks
    assert select_k_shot(data, [1, 3], k=3, seed=6) != picks
    # A larger k with the same seed extends the first class's draw.
    assert set(picks[1]) <= set(select_k_shot(data, [1, 3], 5, seed=5)[1])


def test_k_shot_counts_only_visible_objects_and_refuses_a_large_k():
    data = [entry(0, 2), entry(1, 2), entry(2, crowd=[2]), entry(3, 6)]
    assert select_k_shot(data, [2], k=2)[2] == [0, 1]
    with pytest.raises(AttackDataError, match=r"'blue_triangle' has 2 .*"
                       r"k=3: pass --k values <= 2"):
        select_k_shot(data, [2], k=3, names={2: 'blue_triangle'})


# ----------------------------------------------- wrappers on the shapes set
def shapes_train(ws):
    root = osp.join(str(ws), 'data', 'shapes')
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True),
                dict(type='PackDetInputs')]
    return dict(type='CocoDataset', data_root=root,
                metainfo=dict(classes=SHAPES_CLASS_NAMES),
                ann_file='annotations/instances_train.json',
                data_prefix=dict(img='train/'),
                filter_cfg=dict(filter_empty_gt=False), pipeline=pipeline)


def file_labels(ws):
    """img_id -> set of class names, read from the JSON directly."""
    with open(osp.join(str(ws), 'data', 'shapes', 'annotations',
                       'instances_train.json')) as f:
        coco = json.load(f)
    names = {c['id']: c['name'] for c in coco['categories']}
    out = {im['id']: set() for im in coco['images']}
    for a in coco['annotations']:
        out[a['image_id']].add(names[a['category_id']])
    return out


@pytest.fixture
def mmdet_scope():
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def test_retain_only_subset_holds_no_forgotten_object(workspace,
                                                      mmdet_scope):
    truth = file_labels(workspace)
    ds = AttackSubset(shapes_train(workspace), mode='retain_only',
                      forget_classes=FORGET, exclude_classes=OLD)
    expected = sorted(i for i, names in truth.items()
                      if not names & set(FORGET + OLD))
    assert 0 < len(ds) < len(truth)
    assert sorted(ds.img_ids) == expected
    forbidden = {SHAPES_CLASS_NAMES.index(n) for n in FORGET + OLD}
    for i in range(len(ds)):  # what the pipeline really serves
        labels = ds[i]['data_samples'].gt_instances.labels.tolist()
        assert not set(labels) & forbidden


def test_k_shot_subset_takes_k_images_per_class_with_all_objects(
        workspace, mmdet_scope):
    truth = file_labels(workspace)
    ds = AttackSubset(shapes_train(workspace), mode='k_shot',
                      forget_classes=FORGET, k=2, seed=3)
    assert len(ds) == 4 and len(set(ds.img_ids)) == 4
    assert list(ds.img_ids_by_class) == FORGET
    for name, ids in ds.img_ids_by_class.items():
        assert len(ids) == 2 and all(name in truth[i] for i in ids)
    for i in range(len(ds)):  # every object kept, detector's numbering
        sample = ds[i]['data_samples']
        served = {SHAPES_CLASS_NAMES[lb]
                  for lb in sample.gt_instances.labels.tolist()}
        assert served == truth[sample.img_id]
    again = AttackSubset(shapes_train(workspace), mode='k_shot',
                         forget_classes=FORGET, k=2, seed=3)
    other = AttackSubset(shapes_train(workspace), mode='k_shot',
                         forget_classes=FORGET, k=2, seed=4)
    assert again.img_ids_by_class == ds.img_ids_by_class
    assert other.img_ids_by_class != ds.img_ids_by_class


def test_subset_errors_name_the_fix(workspace, mmdet_scope):
    with pytest.raises(AttackDataError, match='--k values <='):
        AttackSubset(shapes_train(workspace), mode='k_shot',
                     forget_classes=FORGET, k=1000)
    with pytest.raises(AttackDataError, match='unknown class'):
        AttackSubset(shapes_train(workspace), mode='k_shot',
                     forget_classes=['unicorn'], k=1)
    every = list(SHAPES_CLASS_NAMES)
    with pytest.raises(AttackDataError, match='Drop retain_only'):
        AttackSubset(shapes_train(workspace), mode='retain_only',
                     forget_classes=every[:4], exclude_classes=every[4:])


def test_drop_classes_keeps_images_and_labels_drops_objects(workspace,
                                                            mmdet_scope):
    truth = file_labels(workspace)
    ds = DropClassesDataset(shapes_train(workspace), drop_classes=FORGET)
    assert len(ds) == len(truth) and ds.metainfo['classes'] == \
        SHAPES_CLASS_NAMES
    assert ds.num_dropped > 0
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        served = {SHAPES_CLASS_NAMES[lb]
                  for lb in sample.gt_instances.labels.tolist()}
        assert served == truth[sample.img_id] - set(FORGET)


# ------------------------------------------------------- gap and confusion
def test_recovery_gap_against_hand_values():
    merged = {'none': 0.02, 'retain_only': 0.30, 'k_shot k=5': 0.55,
              'head_only k=5': None, 'k_shot k=1': -1.0}
    retrained = {'none': 0.0, 'retain_only': 0.05, 'k_shot k=5': 0.40,
                 'head_only k=5': 0.2, 'k_shot k=1': 0.1}
    gap = recovery_gap(merged, retrained)
    assert list(gap) == list(merged)
    assert gap['none'] == pytest.approx(0.02)
    assert gap['retain_only'] == pytest.approx(0.25)
    assert gap['k_shot k=5'] == pytest.approx(0.15)
    assert gap['head_only k=5'] is None  # missing on one side
    assert gap['k_shot k=1'] is None  # COCO's -1: no ground truth
    assert recovery_gap({'x': 0.1}, {})['x'] is None
    assert recovered({'a': 0.5}, 0.2)['a'] == pytest.approx(0.3)
    assert run_key('k_shot', 5) == 'k_shot k=5' and run_key('none') == 'none'


def test_headline_is_the_gap_only_with_a_retrained_model():
    def run(model, attack, k, value):
        return dict(model=model, attack=attack, k=k,
                    metrics=dict(mAP_forget=value))
    runs = [run('merged', 'none', None, 0.1), run('merged', 'k_shot', 1, .5),
            run('retrained', 'none', None, 0.0),
            run('retrained', 'k_shot', 1, 0.2)]
    head = headline(runs)
    assert head['kind'] == 'recovery_gap'
    assert head['gap'] == pytest.approx({'none': 0.1, 'k_shot k=1': 0.3})
    alone = headline(runs[:2])
    assert alone['kind'] == 'recovered'
    assert alone['recovered'] == pytest.approx({'none': 0.0,
                                                'k_shot k=1': 0.4})


def test_confusion_rows_against_a_hand_built_case():
    names = ['a', 'b', 'c', 'd']
    gt = {1: (np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50],
                        [60, 60, 70, 70], [0, 0, 10, 10]], float),
              np.array([1, 1, 1, 1, 0])),
          2: (np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float),
              np.array([3, 1]))}
    preds = {1: (np.array([[0, 0, 10, 10],  # own class, and a higher "c"
                           [0, 0, 10, 10],
                           [20, 20, 30, 30],  # "c" 0.4 and "d" 0.6
                           [20, 20, 30, 30],
                           [40, 40, 50, 50],  # own class but score 0.2
                           [60, 60, 80, 80]]),  # own class, IoU 0.25
                 np.array([0.5, 0.9, 0.4, 0.6, 0.2, 0.9]),
                 np.array([1, 2, 2, 3, 1, 1]))}
    # image 2 has no detections: its "b" object is missed
    rows = confusion_rows(gt, preds, [1, 3], names, score_thr=0.3,
                          iou_thr=0.5)
    assert list(rows) == ['b', 'd']
    b = rows['b']
    assert b['num_gt'] == 5
    assert b['counts'] == {'b': 1, 'd': 1, MISSED: 3}
    assert list(b['counts']) == ['b', 'd', MISSED]  # own, others, missed
    assert b['fractions'] == pytest.approx({'b': 0.2, 'd': 0.2,
                                            MISSED: 0.6})
    assert rows['d'] == dict(num_gt=1, counts={'d': 0, MISSED: 1},
                             fractions={'d': 0.0, MISSED: 1.0})
    # Same rule as residual detection: own == own@τ, 1 - missed == any@τ.
    res = residual_detection(gt, preds, [1], (0.3, ), 0.5)
    assert res['own@0.3'] == pytest.approx(b['fractions']['b'])
    assert res['any@0.3'] == pytest.approx(1 - b['fractions'][MISSED])


def test_confusion_plot_is_written(tmp_path):
    from gslora_det.attacks import plot_confusion_rows
    rows = {'b': dict(num_gt=4, counts={'b': 1, 'c': 2, MISSED: 1},
                      fractions={'b': .25, 'c': .5, MISSED: .25})}
    path = plot_confusion_rows(rows, str(tmp_path / 'p' / 'c.png'), 'x')
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_plan_orders_attacks_and_checks_k():
    assert plan(['head_only', 'retain_only'], [5, 1]) == [
        ('none', None), ('retain_only', None), ('head_only', 5),
        ('head_only', 1)]
    assert plan(['none'], [1]) == [('none', None)]  # evaluation only
    with pytest.raises(ConfigError, match='unknown attack'):
        plan(['finetune'], [1])
    with pytest.raises(ConfigError, match='positive'):
        plan(['k_shot'], [0])


# ------------------------------------------- what each attack really trains
@pytest.fixture(scope='module')
def init_checkpoint(tmp_path_factory):
    """The tiny Deformable DETR at its initialisation (fast to make: the
    attacks only need weights of the right shape)."""
    from gslora_det.checkpoint import save_checkpoint_atomic
    from gslora_det.config_checks import _build_model
    torch.manual_seed(0)
    cfg = Config.fromfile(PRETRAIN_CFG)
    cfg.merge_from_dict(SMALL)
    model = _build_model(cfg)
    # Built, not initialised, parameters hold whatever memory held (NaN
    # included, now and then): initialise them, seeded.
    model.init_weights()
    path = str(tmp_path_factory.mktemp('init') / 'init.pth')
    save_checkpoint_atomic(dict(meta={}, state_dict=model.state_dict()),
                           path)
    return path


def attack_run(ws, ckpt, attack, tmp_path):
    from gslora_det.attacks.runner import run_one
    from gslora_det.checkpoint import load_checkpoint_safely
    cfg = Config.fromfile(PRETRAIN_CFG)
    # Stem and layer1 frozen: a full attack must leave them alone.
    cfg.merge_from_dict(dict(TINY, **SMALL,
                             **{'model.backbone.frozen_stages': 1}))
    assert cfg.train_dataloader.dataset.pipeline[3].type == 'Resize'
    run = run_cfg(cfg, checkpoint=ckpt, work_dir=str(tmp_path / attack),
                  name=f'test_{attack}', attack=attack, k=1, forget=FORGET,
                  previous=[], steps=1, lr=1e-3, seed=0, score_thr=0.3,
                  head_prefix='bbox_head.cls_branches',
                  progress=dict(label=attack, index=1, total=1))
    result, runner = run_one(run)
    before = load_checkpoint_safely(ckpt)['state_dict']
    after = runner.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    return result, runner, changed


def test_head_only_changes_only_the_class_head(workspace, init_checkpoint,
                                               tmp_path, monkeypatch):
    monkeypatch.chdir(str(workspace))
    result, runner, changed = attack_run(workspace, init_checkpoint,
                                         'head_only', tmp_path)
    # Buffers too: BatchNorm statistics outside the head do not move.
    # (The state dict names the shared head once per decoder layer.)
    head = {'bbox_head.cls_branches.0.weight', 'bbox_head.cls_branches.0.bias'}
    assert head <= changed
    assert all(k.startswith('bbox_head.cls_branches.') for k in changed)
    assert set(result['trained']['names']) == head
    assert result['dataset_size'] == 2  # k=1 per forgotten class
    assert 'mAP_forget' in result['metrics']
    assert set(result['confusion']['rows']) == set(FORGET)


def test_full_attack_trains_what_the_config_trains(workspace,
                                                   init_checkpoint,
                                                   tmp_path, monkeypatch):
    monkeypatch.chdir(str(workspace))
    result, runner, changed = attack_run(workspace, init_checkpoint,
                                         'k_shot', tmp_path)
    model = runner.model
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith('backbone.layer1.') for n in frozen)
    assert 'backbone.conv1.weight' in frozen
    assert not frozen & changed  # frozen stages stay frozen
    for part in ('backbone.layer2.', 'neck.', 'encoder.', 'decoder.',
                 'bbox_head.cls_branches.', 'bbox_head.reg_branches.'):
        assert any(n.startswith(part) for n in trainable & changed), part
    # AdamW moves every parameter that got a gradient.
    assert len(trainable & changed) >= 0.9 * len(trainable)
    assert result['trained']['num_tensors'] == len(trainable)


def test_class_head_of_each_detr_family_member():
    from gslora_det.attacks import class_head_prefix
    from gslora_det.config_checks import _build_model
    for path, prefix in ((PRETRAIN_CFG, 'bbox_head.cls_branches'),
                         (DETR_CFG, 'bbox_head.fc_cls')):
        assert class_head_prefix(_build_model(Config.fromfile(path))) == \
            prefix
    with pytest.raises(ValueError, match='DETR family'):
        class_head_prefix(torch.nn.Linear(2, 2))


# ------------------------------------------------------ bad input, retrain
def load_tool(name):
    module = load_script(osp.join('tools', f'{name}.py'), f'tool_{name}')
    return module


def test_attack_tool_bad_input_is_one_error_line(workspace, init_checkpoint,
                                                 tmp_path, monkeypatch):
    """The tool turns bad input into ``sys.exit('error: ...')``: one line
    on stderr, exit status 1, no traceback."""
    monkeypatch.chdir(str(workspace))
    tool = load_tool('attack')
    work = ['--work-dir', str(tmp_path / 'w')]
    cases = [
        (['missing.pth', '--forget-classes', 'unicorn'],
         r'^error: --forget-classes: unknown .*unicorn.*Valid names'),
        (['missing.pth', '--forget-classes', *FORGET],
         r'^error: merged checkpoint not found: missing\.pth'),
        ([init_checkpoint, '--forget-classes', *FORGET, '--k', '99',
          '--cfg-options', *[f'{k}={v}' for k, v in SMALL.items()]],
         r"^error: class 'blue_triangle' has \d+ .*--k values <= \d+$"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            tool.main([PRETRAIN_CFG, *argv, *work])
        text = str(exc.value.code)
        assert '\n' not in text and re.search(message, text), text
    with pytest.raises(SystemExit) as exc:  # argparse: usage, status 2
        tool.main([PRETRAIN_CFG, 'x.pth', '--forget-classes', 'a', '--k',
                   '0', *work])
    assert exc.value.code == 2


def test_attack_api_refuses_missing_files_and_large_k(workspace,
                                                      init_checkpoint,
                                                      tmp_path, monkeypatch):
    from gslora_det.attacks import run_attacks
    monkeypatch.chdir(str(workspace))
    kw = dict(forget_classes=FORGET, work_dir=str(tmp_path),
              cfg_options=dict(TINY, **SMALL))
    with pytest.raises(ConfigError, match='retrained checkpoint not found'):
        run_attacks(PRETRAIN_CFG, init_checkpoint, retrained='nope.pth',
                    **kw)
    with pytest.raises(ConfigError, match='--k values <='):
        run_attacks(PRETRAIN_CFG, init_checkpoint, ks=[500], **kw)
    task_cfg = osp.join(REPO, 'configs', 'shapes',
                        'gslora_deformable-detr_r18-tiny_task1_shapes.py')
    with pytest.raises(ConfigError, match="detector config the task"):
        run_attacks(task_cfg, init_checkpoint, **kw)
    assert not os.listdir(str(tmp_path))  # nothing trained or written


def test_retrain_config_drops_classes_and_resumes(tmp_path):
    from gslora_det.attacks.retrain import retrain_config
    from gslora_det.checkpoint import save_checkpoint_atomic
    work = str(tmp_path / 'retrain')
    lines = []
    cfg = retrain_config(PRETRAIN_CFG, FORGET, work, dict(
        load_from='some_zoo_model.pth'), log=lines.append)
    ds = cfg.train_dataloader.dataset
    assert ds.type == 'DropClassesDataset' and ds.drop_classes == FORGET
    assert ds.dataset.type == 'CocoDataset'
    assert cfg.model.bbox_head.num_classes == 8  # numbering unchanged
    assert cfg.load_from is None and not cfg.resume
    assert 'gslora_det.attacks' in cfg.custom_imports['imports']
    assert any('some_zoo_model.pth' in line for line in lines)
    os.makedirs(work)
    # A checkpoint of this retraining (its config as mmengine stores it)...
    save_checkpoint_atomic(dict(state_dict={}, meta=dict(
        cfg=cfg.pretty_text)), osp.join(work, 'epoch_1.pth'))
    again = retrain_config(PRETRAIN_CFG, FORGET, work, log=lines.append)
    assert again.resume and again.load_from == osp.join(work, 'epoch_1.pth')
    # ... but never another run's (e.g. the pretraining of the base model).
    save_checkpoint_atomic(dict(state_dict={}, meta=dict(
        cfg=Config.fromfile(PRETRAIN_CFG).pretty_text)),
        osp.join(work, 'epoch_2.pth'))
    with pytest.raises(ConfigError, match='another run'):
        retrain_config(PRETRAIN_CFG, FORGET, work, log=lines.append)
    with pytest.raises(ConfigError, match='another run'):  # other classes
        retrain_config(PRETRAIN_CFG, FORGET[:1], str(tmp_path / 'retrain'),
                       log=lines.append)
    with pytest.raises(ConfigError, match='unknown class'):
        retrain_config(PRETRAIN_CFG, ['unicorn'], work, log=lines.append)


# ----------------------------------------------------------- end to end
@pytest.mark.slow
def test_retrain_without_tool_publishes_a_safe_checkpoint(workspace):
    from gslora_det.checkpoint import load_checkpoint_safely
    work = osp.join(str(workspace), 'work_dirs', 'retrain_e2e')
    args = [PRETRAIN_CFG, '--forget-classes', *FORGET, '--work-dir', work,
            '--cfg-options', 'train_cfg.max_epochs=1',
            'train_dataloader.dataset.indices=4', *TINY_ARGS]
    proc = run_tool('retrain_without.py', *args, cwd=workspace)
    assert 'objects dropped' in proc.stdout + proc.stderr
    ckpt = load_checkpoint_safely(osp.join(work, 'retrained.pth'))
    assert ckpt['meta']['retrained_without'] == FORGET
    assert ckpt['state_dict']['bbox_head.cls_branches.0.weight'].shape[0] \
        == 8
    again = run_tool('retrain_without.py', *args, cwd=workspace)
    assert 'already retrained' in again.stdout
    # Interrupted after epoch 1 of 2: the same command resumes.
    os.remove(osp.join(work, 'retrained.pth'))
    longer = [a if a != 'train_cfg.max_epochs=1' else
              'train_cfg.max_epochs=2' for a in args]
    resumed = run_tool('retrain_without.py', *longer, cwd=workspace)
    assert 'resuming from' in resumed.stdout
    assert re.search(r'resumed epoch: 1, iter: [1-9]',
                     resumed.stdout + resumed.stderr)
    ckpt = load_checkpoint_safely(osp.join(work, 'retrained.pth'))
    assert ckpt['meta']['epoch'] == 2


@pytest.mark.slow
def test_attack_tool_end_to_end(workspace, base_checkpoint, monkeypatch):
    work = osp.join(str(workspace), 'work_dirs', 'attack_e2e')
    args = [PRETRAIN_CFG, base_checkpoint, '--forget-classes', *FORGET,
            '--work-dir', work, '--k', '1', '--steps', '1',
            # the base model stands in for a retrained one: same input,
            # so the gap is known
            '--retrained', base_checkpoint, '--cfg-options', *TINY_ARGS]
    proc = run_tool('attack.py', *args, cwd=workspace)
    assert 'attack 1/8: merged none' in proc.stdout
    assert 'attack 8/8: retrained head_only k=1' in proc.stdout
    assert 'step 1/1' in proc.stdout + proc.stderr
    with open(osp.join(work, 'attack_report.json')) as f:
        report = json.load(f)
    assert '0-1' in report['units']
    s = report['settings']
    assert (s['steps'], s['k'], s['seed'], s['lr_source']) == (
        1, [1], 0, 'config')
    assert s['lr'] == pytest.approx(5e-4)  # the config's AdamW lr
    assert s['head_only_trains'] == 'bbox_head.cls_branches'
    shots = report['images']['k=1']['img_ids_by_class']
    assert list(shots) == FORGET and all(len(v) == 1
                                         for v in shots.values())
    runs = {(r['model'], run_key(r['attack'], r['k'])): r
            for r in report['runs']}
    assert len(runs) == 8
    head = runs[('merged', 'head_only k=1')]['trained']
    assert set(head['names']) == {'bbox_head.cls_branches.0.weight',
                                  'bbox_head.cls_branches.0.bias'}
    assert set(head['params_by_module']) == {'bbox_head'}
    full = runs[('merged', 'k_shot k=1')]['trained']
    assert full['frozen_changed'] == [] and full['changed_tensors'] > 100
    assert runs[('merged', 'retain_only')]['dataset_size'] == \
        report['images']['retain_only']['num_images']
    gap = report['headline']['gap']
    for key, value in gap.items():
        m = runs[('merged', key)]['metrics']['mAP_forget']
        r = runs[('retrained', key)]['metrics']['mAP_forget']
        assert value == pytest.approx(m - r)
    assert gap['none'] == 0
    for r in report['runs']:  # rows agree with residual detection
        rows = [r['confusion']['rows'][name] for name in FORGET]
        total = sum(row['num_gt'] for row in rows)
        assert total == r['metrics']['residual_num_gt']
        own = sum(row['counts'][name] for row, name in zip(rows, FORGET))
        missed = sum(row['counts'][MISSED] for row in rows)
        assert own / total == pytest.approx(r['metrics']['residual_own@0.3'])
        assert 1 - missed / total == pytest.approx(
            r['metrics']['residual_any@0.3'])
    with open(osp.join(work, 'attack_report.md')) as f:
        md = f.read()
    assert '| attack | merged | retrained | gap |' in md
    assert '| merged | head_only k=1 | 2 | 1,032 |' in md
    for rel in report['plots']:
        assert osp.getsize(osp.join(work, rel)) > 1000
    # Run again: every run is reused, the report is the same.
    again = run_tool('attack.py', *args, cwd=workspace)
    assert again.stdout.count('done already, skipping') == 8
    with open(osp.join(work, 'attack_report.json')) as f:
        assert json.load(f)['runs'] == report['runs']
    # Another attacked model shares a model's finished runs through
    # runs_dirs (benchmarks/attack_methods.py: one retrained model, many
    # methods): nothing reruns, nothing is written under its own runs/.
    from gslora_det.attacks import run_attacks
    monkeypatch.chdir(str(workspace))
    work2 = osp.join(str(workspace), 'work_dirs', 'attack_e2e_shared')
    shared = run_attacks(
        PRETRAIN_CFG, base_checkpoint, FORGET, work2, ks=[1], steps=1,
        retrained=base_checkpoint, cfg_options=dict(TINY),
        runs_dirs={role: osp.join(work, 'runs', role)
                   for role in ('merged', 'retrained')})
    assert shared['runs'] == report['runs']
    assert shared['headline'] == report['headline']
    assert not osp.exists(osp.join(work2, 'runs'))


def test_benchmark_gap_rows_and_task_inputs(tmp_path):
    from gslora_det.benchmark.attack_step import (gap_markdown, gap_rows,
                                                  task_input)
    head = dict(kind='recovery_gap',
                merged={'none': 0.0, 'k_shot k=5': 0.40},
                retrained={'none': 0.0, 'k_shot k=5': 0.25},
                gap={'none': 0.0, 'k_shot k=5': 0.15})
    (tmp_path / 'attack_report.json').write_text(json.dumps(
        dict(headline=head)))
    rows = gap_rows('shapes', 1, str(tmp_path))
    assert [r['attack'] for r in rows] == ['none', 'k_shot k=5']
    assert rows[1]['gap'] == 0.15 and rows[1]['retrained'] == 0.25
    assert '| shapes | 1 | k_shot k=5 | 40.0 | 25.0 | +15.0 |' in \
        gap_markdown(rows)
    assert task_input('run', 'base.pth', 1) == 'base.pth'
    assert task_input('run', 'base.pth', 3).endswith('task_2/merged.pth')


def test_attack_methods_table_against_hand_values(tmp_path):
    bench = load_script('benchmarks/attack_methods.py')
    report = dict(
        headline=dict(kind='recovery_gap',
                      merged={'none': 0.0, 'retain_only': 0.351},
                      retrained={'none': 0.0, 'retain_only': 0.0},
                      gap={'none': 0.0, 'retain_only': 0.351}),
        runs=[dict(model='retrained', attack='none', k=None,
                   metrics=dict(mAP_forget=0.0)),
              dict(model='retrained', attack='retain_only', k=None,
                   metrics=dict(mAP_forget=0.0)),
              dict(model='base', attack='none', k=None,
                   metrics=dict(mAP_forget=0.804)),
              dict(model='base', attack='retain_only', k=None,
                   metrics=dict(mAP_forget=0.79))])
    for run in report['runs']:
        run['metrics'].update(mAP_retain=0.849 if run['model'] == 'base'
                              else 0.845)
    report['settings'] = dict(score_thr=0.3)
    task = dict(mAP_forget_after=0.0, mAP_retain_before=0.849,
                mAP_retain_after=0.709, residual_after={})
    rows = [bench.method_row('gslora', report, task),
            bench.reference_row('retrained', report),
            bench.reference_row('base', report)]
    md = bench.markdown(rows, ['none', 'retain_only'])
    assert ('| gslora | +14.0 | missed: retain_drop 0.1400 > 0.0300 | '
            '0.0 (+0.0) | 35.1 (+35.1) |') in md
    assert '| retrained | +0.4 | met | 0.0 | 0.0 |' in md
    assert '| base | - | - | 80.4 | 79.0 |' in md
    png = str(tmp_path / 'attacks.png')
    bench.plot(rows, ['none', 'retain_only'], png, 'title')
    assert osp.getsize(png) > 1000
