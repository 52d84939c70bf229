"""Tests for gslora_det.report.before_after on a hand-made COCO file, three
small images and hand-made prediction JSONs (fast)."""
import json
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from gslora_det.report.before_after import (draw_before_after, short_name,
                                            draw_task_before_after,
                                            pick_images,
                                            relabelled_detections)

PNG = b'\x89PNG\r\n\x1a\n'
# Ids are not positions: 'cat' (forgotten) is listed last, with id 3.
CATEGORIES = [dict(id=11, name='bird'), dict(id=7, name='dog'),
              dict(id=3, name='cat')]
CLASSES = ['cat', 'dog', 'bird']


def ann(i, img, cat, bbox):
    return dict(id=i, image_id=img, category_id=cat, bbox=bbox,
                area=bbox[2] * bbox[3], iscrowd=0)


@pytest.fixture
def coco(tmp_path):
    """img 10: 2 cats; img 20: 1 cat, 1 dog; img 30: 1 bird, no cat."""
    images = [dict(id=10, file_name='a.png', width=64, height=48),
              dict(id=20, file_name='b.png', width=48, height=64),
              dict(id=30, file_name='c.png', width=64, height=64)]
    anns = [ann(1, 10, 3, [4, 4, 20, 20]), ann(2, 10, 3, [34, 10, 20, 20]),
            ann(3, 20, 3, [4, 30, 24, 24]), ann(4, 20, 7, [20, 4, 20, 20]),
            ann(5, 30, 11, [10, 10, 30, 30])]
    (tmp_path / 'img').mkdir()
    rng = np.random.default_rng(0)
    for im in images:
        Image.fromarray(rng.integers(0, 80, (im['height'], im['width'], 3),
                                     dtype=np.uint8)).save(
            tmp_path / 'img' / im['file_name'])
    ann_file = tmp_path / 'val.json'
    ann_file.write_text(json.dumps(dict(images=images, annotations=anns,
                                        categories=CATEGORIES)))
    det = lambda img, cat, bbox, s: dict(  # noqa: E731
        image_id=img, category_id=cat, bbox=bbox, score=s)
    before = [det(10, 3, [4, 5, 20, 20], 0.9), det(10, 3, [34, 10, 20, 19],
                                                      0.8),
              det(20, 3, [4, 30, 24, 24], 0.9), det(20, 7, [20, 4, 20, 20],
                                                      0.9),
              det(30, 11, [10, 10, 30, 30], 0.9)]
    # after: a cat of img 10 is boxed as a dog (relabelled), the other cat
    # only below the threshold; img 20's cat is gone, its dog stays.
    after = [det(10, 7, [4, 4, 20, 21], 0.7), det(10, 3, [34, 10, 20, 20],
                                                    0.1),
             det(20, 7, [20, 4, 20, 20], 0.9), det(30, 11, [10, 10, 30, 30],
                                                     0.9)]
    paths = {}
    for name, preds in (('before', before), ('after', after)):
        paths[name] = tmp_path / f'{name}_predictions.bbox.json'
        paths[name].write_text(json.dumps(preds))
    return SimpleNamespace(root=tmp_path, ann_file=str(ann_file),
                           img_dir=str(tmp_path / 'img'), anns=anns,
                           before=str(paths['before']),
                           after=str(paths['after']))


def test_relabelled_detections_hand_values():
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=float)
    gt_labels = np.array([1, 2])
    dets = np.array([
        [0, 0, 10, 10],    # class 2 on the class-1 object: relabelled
        [0, 0, 10, 10],    # its own class: not relabelled
        [0, 0, 10, 10],    # class 2, but score 0.2 < 0.3
        [5, 0, 15, 10],    # IoU 50 / 150 = 0.33 < 0.5
        [0, 0, 10, 8],     # IoU 0.8, score exactly 0.3: counted
        [20, 0, 30, 10],   # class 1 on the class-2 object: relabelled
        [50, 50, 60, 60],  # covers nothing
    ], dtype=float)
    labels = np.array([2, 1, 2, 2, 3, 1, 2])
    scores = np.array([0.9, 0.9, 0.2, 0.9, 0.3, 0.5, 0.9])
    got = relabelled_detections(gt, gt_labels, dets, labels, scores,
                                score_thr=0.3, iou_thr=0.5)
    assert got.tolist() == [True, False, False, False, True, True, False]
    assert relabelled_detections(np.zeros((0, 4)), np.zeros(0), dets,
                                 labels, scores).tolist() == [False] * 7
    assert relabelled_detections(gt, gt_labels, np.zeros((0, 4)),
                                 np.zeros(0), np.zeros(0)).shape == (0,)


def test_row_labels_are_short_base_names():
    long = 'train/IMG_0042_jpg.rf.3f9a8c7d6e5b4a3f2e1d0c9b8a7f6e5d.jpg'
    assert short_name(long) == 'IMG_0042_jpg…a7f6e5d.jpg'
    assert len(short_name(long)) == 24
    assert short_name('val/000001.png') == '000001.png'


def test_pick_images_most_forgotten_objects_then_id(coco):
    assert pick_images(coco.anns, {3}, 4) == [10, 20]  # never img 30
    assert pick_images(coco.anns, {3}, 1) == [10]
    assert pick_images(coco.anns, {3, 7}, 4) == [10, 20]  # tie: by id
    assert pick_images(coco.anns, {3}, 4, prefer={20, 30}) == [20]
    assert pick_images(coco.anns, {3}, 4, prefer={30}) == [10, 20]
    crowd = [dict(a, iscrowd=1) if a['id'] < 3 else a for a in coco.anns]
    assert pick_images(crowd, {3}, 4) == [20]


def test_draw_before_after_writes_the_png(coco, tmp_path):
    out = str(tmp_path / 'out' / 'before_after.png')
    assert draw_before_after(coco.ann_file, coco.img_dir, coco.before,
                             coco.after, CLASSES, ['cat'], out,
                             before_label='base.pth',
                             after_label='merged.pth') == out
    with open(out, 'rb') as f:
        assert f.read(8) == PNG
    with Image.open(out) as im:  # 2 rows (the 2 images with a cat)
        assert im.width > 700 and 800 < im.height < 1200
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == [
        'before_after.png']  # no temporary file left


def test_draw_before_after_refuses_what_cannot_be_drawn(coco, tmp_path):
    out = str(tmp_path / 'x.png')
    with pytest.raises(ValueError, match='horse'):
        draw_before_after(coco.ann_file, coco.img_dir, coco.before,
                          coco.after, CLASSES, ['horse'], out)
    with pytest.raises(ValueError, match='not in classes'):
        draw_before_after(coco.ann_file, coco.img_dir, coco.before,
                          coco.after, ['dog', 'bird'], ['cat'], out)
    with pytest.raises(ValueError, match='num_images'):
        draw_before_after(coco.ann_file, coco.img_dir, coco.before,
                          coco.after, CLASSES, ['cat'], out, num_images=0)
    with open(coco.ann_file) as f:
        no_cat = json.load(f)
    no_cat['annotations'] = [a for a in no_cat['annotations']
                             if a['category_id'] != 3]
    (tmp_path / 'no_cat.json').write_text(json.dumps(no_cat))
    with pytest.raises(ValueError, match='no image'):
        draw_before_after(str(tmp_path / 'no_cat.json'), coco.img_dir,
                          coco.before, coco.after, CLASSES, ['cat'], out)
    assert not osp.exists(out)


def test_draw_task_before_after_reads_the_runner(coco):
    metric = SimpleNamespace(class_sets=lambda: dict(
        forget=['cat'], retain=['dog', 'bird'], old=[]))
    runner = SimpleNamespace(
        work_dir=str(coco.root),
        val_evaluator=SimpleNamespace(metrics=[metric]),
        val_dataloader=SimpleNamespace(dataset=SimpleNamespace(
            ann_file='unused.json', data_prefix=dict(img=coco.img_dir),
            metainfo=dict(classes=tuple(CLASSES)))),
        cfg=dict(val_evaluator=dict(type='ForgettingMetric',
                                    ann_file=coco.ann_file),
                 forget_task=dict(index=2)))
    out = str(coco.root / 'before_after.png')
    assert draw_task_before_after(runner, out, 'a/b/task_1/merged.pth',
                                  num_images=1) == out
    assert osp.getsize(out) > 1000
    (coco.root / 'after_predictions.bbox.json').unlink()
    with pytest.raises(FileNotFoundError, match='after_predictions'):
        draw_task_before_after(runner, out)
