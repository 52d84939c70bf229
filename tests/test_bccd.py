"""BCCD: VOC -> COCO conversion with its quirks fixed, and the BCCD configs.

Uses the real BCCD copy at ``../shared/data/bccd`` (relative to the repo);
tests that need it are skipped, with the reason, when it is absent.
"""
import json
import os
import os.path as osp
from itertools import combinations

import pytest
from PIL import Image

from conftest import CONFIGS, REPO, run_tool
from gslora_det.data.bccd import (BCCD_CLASSES, bccd_converted,
                                  convert_bccd, find_voc_root)
from gslora_det.data.validate import validate_coco

BCCD_SRC = osp.normpath(osp.join(REPO, '..', 'shared', 'data', 'bccd'))
needs_bccd = pytest.mark.skipif(
    not osp.isdir(osp.join(BCCD_SRC, 'BCCD', 'Annotations')),
    reason=f'BCCD not found at {BCCD_SRC} (clone '
    'github.com/Shenggan/BCCD_Dataset there to run these tests)')
PRETRAIN_CFG = osp.join(CONFIGS, 'bccd',
                        'deformable-detr_effnet-lite0-tiny_bccd.py')


def _iou(a, b):
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@needs_bccd
def test_convert_real_bccd(tmp_path):
    out = str(tmp_path / 'data' / 'bccd')
    stats = convert_bccd(BCCD_SRC, out)
    assert bccd_converted(out)
    assert stats['train']['images'] == 292 and stats['val']['images'] == 72
    # the published files hold 2 zero-area and 7 shifted duplicate boxes
    fixes = [s['fixes'] for s in stats.values()]
    assert sum(f.get('degenerate box dropped', 0) for f in fixes) == 2
    assert sum(f.get('duplicate box dropped', 0) for f in fixes) == 7
    link = osp.join(out, 'images')
    assert osp.islink(link) and not osp.isabs(os.readlink(link))
    names = set()
    for split in ('train', 'val'):
        ann_file = osp.join(out, 'annotations', f'instances_{split}.json')
        validate_coco(ann_file, link)  # ids, boxes inside, images readable
        with open(ann_file) as f:
            coco = json.load(f)
        assert [c['name'] for c in coco['categories']] == list(BCCD_CLASSES)
        names |= {img['file_name'] for img in coco['images']}
        by_image = {}
        for ann in coco['annotations']:
            x, y, w, h = ann['bbox']
            assert w >= 1 and h >= 1 and x >= 0 and y >= 0
            assert x + w <= 640 and y + h <= 480
            by_image.setdefault((ann['image_id'], ann['category_id']),
                                []).append(ann['bbox'])
        assert all(_iou(a, b) < 0.9 for boxes in by_image.values()
                   for a, b in combinations(boxes, 2))
        present = {c['category_id'] for c in coco['annotations']}
        assert present == {1, 2, 3}  # every class in both splits
    assert len(names) == 364  # train and val disjoint, all images used


def _write_voc(root, stem, objects, size=(64, 48)):
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    Image.new('RGB', size).save(osp.join(root, 'JPEGImages', stem + '.jpg'))
    objs = ''.join(
        f'<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin>'
        f'<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax>'
        '</bndbox></object>' for n, b in objects)
    # the XML size is wrong on purpose: the JPEG's real size must win
    with open(osp.join(root, 'Annotations', stem + '.xml'), 'w') as f:
        f.write(f'<annotation><filename>x.jpg</filename><size><width>640'
                f'</width><height>480</height></size>{objs}</annotation>')


def test_convert_fixes_quirks(tmp_path):
    src = str(tmp_path / 'src')
    _write_voc(src, 'a', [('RBC', (2, 2, 40, 40)),
                          ('RBC', (3, 3, 41, 41)),      # duplicate
                          ('Platelet ', (50, 40, 80, 60)),  # typo, outside
                          ('wbc', (10, 10, 10, 30))])   # zero width
    _write_voc(src, 'b', [('WBC', (5, 5, 30, 30))])
    for name, stems in (('trainval', 'a'), ('test', 'b')):
        with open(osp.join(src, 'ImageSets', 'Main', name + '.txt'),
                  'w') as f:
            f.write('\n'.join(stems) + '\n')
    assert find_voc_root(src) == src
    stats = convert_bccd(src, str(tmp_path / 'out'))
    assert stats['train']['fixes'] == {
        'duplicate box dropped': 1, 'class name normalised': 2,
        'box clipped to the image': 1, 'degenerate box dropped': 1}
    with open(tmp_path / 'out' / 'annotations' / 'instances_train.json') as f:
        coco = json.load(f)
    assert coco['images'][0]['width'] == 64
    assert [(a['category_id'], a['bbox']) for a in coco['annotations']] == [
        (1, [2.0, 2.0, 38.0, 38.0]), (3, [50.0, 40.0, 14.0, 8.0])]
    _write_voc(src, 'a', [('Neutrophil', (1, 1, 9, 9))])
    with pytest.raises(ValueError, match='unknown class name'):
        convert_bccd(src, str(tmp_path / 'out'))
    with pytest.raises(FileNotFoundError, match='--src'):
        convert_bccd(str(tmp_path / 'nowhere'), str(tmp_path / 'out'))


def test_bccd_task_configs_name_the_right_classes():
    from mmengine.config import Config

    from gslora_det.task import apply_forget_task
    expected = [(['Platelets'], ['RBC', 'WBC'], []),
                (['WBC'], ['RBC'], ['Platelets'])]
    for k, (forget, retain, old) in enumerate(expected, start=1):
        cfg = Config.fromfile(osp.join(
            CONFIGS, 'bccd',
            f'gslora_deformable-detr_effnet-lite0-tiny_task{k}_bccd.py'))
        sets = apply_forget_task(cfg)
        assert (sets['forget'], sets['retain'], sets['old']) == \
            (forget, retain, old)
        assert cfg.val_evaluator.ann_file == \
            'data/bccd/annotations/instances_val.json'
        assert cfg.model.neck.in_channels == [40, 112, 320]
        assert cfg.model.bbox_head.num_classes == 3


@needs_bccd
def test_bccd_pretraining_runs_a_few_iterations(tmp_path):
    """2 steps of the real pretraining config on a 6 + 4 image subset."""
    src = tmp_path / 'src' / 'BCCD'
    real = osp.join(BCCD_SRC, 'BCCD')
    stems = [f'BloodImage_{i:05d}' for i in range(10)]
    for sub, ext in (('Annotations', '.xml'), ('JPEGImages', '.jpg')):
        os.makedirs(src / sub)
        for stem in stems:
            os.symlink(osp.join(real, sub, stem + ext), src / sub / (stem +
                                                                     ext))
    os.makedirs(src / 'ImageSets' / 'Main')
    (src / 'ImageSets' / 'Main' / 'trainval.txt').write_text(
        '\n'.join(stems[:6]))
    (src / 'ImageSets' / 'Main' / 'test.txt').write_text(
        '\n'.join(stems[6:]))
    run_tool('convert_bccd.py', '--src', str(tmp_path / 'src'), '--out',
             'data/bccd', cwd=tmp_path)
    work = str(tmp_path / 'work')
    run_tool('train.py', PRETRAIN_CFG, '--work-dir', work, '--cfg-options',
             'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
             'default_hooks.checkpoint.interval=2',
             'train_dataloader.batch_size=2',
             'train_dataloader.num_workers=0',
             'train_dataloader.persistent_workers=False',
             'val_dataloader.num_workers=0',
             'val_dataloader.persistent_workers=False', cwd=tmp_path)
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('iter_2.pth')
    # ... then 2 steps of forgetting task 1 from it, with the real task
    # config (the one default on the pretraining config; batch 2 = 1 + 1):
    # forget photos keep their retained cells as positives.
    task_cfg = osp.join(
        CONFIGS, 'bccd', 'gslora_deformable-detr_effnet-lite0-tiny_'
        'task1_bccd.py')
    forget = str(tmp_path / 'forget')
    run_tool('train.py', task_cfg, '--work-dir', forget, '--cfg-options',
             f'load_from={work}/iter_2.pth', 'train_cfg.max_iters=2',
             'train_cfg.val_interval=2',
             'default_hooks.checkpoint.interval=2',
             'train_dataloader.batch_size=2',
             'forgetting.controller.probe_images=2',
             'train_dataloader.num_workers=0',
             'train_dataloader.persistent_workers=False',
             'val_dataloader.num_workers=0',
             'val_dataloader.persistent_workers=False', cwd=tmp_path)
    with open(osp.join(forget, 'forget_report.json')) as f:
        assert json.load(f)['train_iters'] == 2
    logs = [osp.join(root, name) for root, _, names in os.walk(forget)
            for name in names if name.endswith('.log')]
    text = ''.join(open(path).read() for path in logs)
    assert 'f.r.loss_cls' in text and 'f.loss_bg' in text
