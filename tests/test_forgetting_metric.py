"""Tests for gslora_det.evaluation: residual detection, H-mean and the
ForgettingMetric end to end on a tiny COCO file (runs in seconds)."""
import json

import numpy as np
import pytest
import torch

from gslora_det.evaluation import (ForgettingMetric, box_iou, h_mean,
                                   residual_detection)

# --------------------------------------------------------------- residual
GT_BOX = np.array([[10., 10., 50., 50.]])


def _res(preds, classes=(0, ), gt_label=0):
    gts = {1: (GT_BOX, np.array([gt_label]))}
    return residual_detection(gts, preds, classes)


def test_box_iou():
    iou = box_iou(GT_BOX, np.array([[10., 10., 50., 50.], [30., 10., 70., 50.],
                                    [60., 60., 70., 70.]]))
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0]])
    assert box_iou(GT_BOX, np.zeros((0, 4))).shape == (1, 0)


def test_residual_own_class_at_score_04():
    out = _res({1: (GT_BOX, np.array([0.4]), np.array([0]))})
    assert out['num_gt'] == 1
    assert out['own@0.1'] == 1.0 and out['own@0.3'] == 1.0
    assert out['own@0.5'] == 0.0
    assert out['any@0.3'] == 1.0 and out['any@0.5'] == 0.0


def test_residual_relabelled_object_is_not_forgotten():
    out = _res({1: (GT_BOX, np.array([0.9]), np.array([2]))})
    assert out['own@0.5'] == 0.0
    assert out['any@0.5'] == 1.0


def test_residual_low_iou_does_not_count():
    shifted = np.array([[30., 10., 70., 50.]])  # IoU 1/3 with the GT
    out = _res({1: (shifted, np.array([0.9]), np.array([0]))})
    assert out['own@0.1'] == 0.0 and out['any@0.1'] == 0.0


def test_residual_fractions_over_several_objects():
    gts = {1: (np.array([[0., 0., 10., 10.], [20., 20., 30., 30.]]),
               np.array([0, 1])),
           2: (np.array([[0., 0., 10., 10.]]), np.array([0]))}
    preds = {1: (np.array([[0., 0., 10., 10.]]), np.array([0.6]),
                 np.array([0]))}  # image 2 has no predictions at all
    out = residual_detection(gts, preds, [0], score_thrs=(0.5, ))
    assert out == {'num_gt': 2, 'own@0.5': 0.5, 'any@0.5': 0.5}


def test_residual_empty_inputs():
    empty = {'num_gt': 0, 'own@0.5': None, 'any@0.5': None}
    preds = {1: (GT_BOX, np.array([0.9]), np.array([0]))}
    gts = {1: (GT_BOX, np.array([0]))}
    assert residual_detection(gts, preds, [], score_thrs=(0.5, )) == empty
    assert residual_detection({}, preds, [0], score_thrs=(0.5, )) == empty
    assert residual_detection(gts, preds, [3], score_thrs=(0.5, )) == empty
    no_det = residual_detection(gts, {}, [0], score_thrs=(0.5, ))
    assert no_det == {'num_gt': 1, 'own@0.5': 0.0, 'any@0.5': 0.0}


# ----------------------------------------------------------------- h-mean
def test_h_mean_values():
    assert h_mean(0.8, 0.0, 1.0) == pytest.approx(2 * 0.8 / 1.8)
    assert h_mean(0.6, 0.2, 0.4) == pytest.approx(0.4)
    assert isinstance(h_mean(0.6, 0.2, 0.4), float)


def test_h_mean_degenerate():
    assert h_mean(0.5, 0.5, 0.9) == 0.0  # nothing forgotten
    assert h_mean(0.3, 0.5, 0.9) == 0.0  # forget classes got better
    assert h_mean(0.5, 0.1, 0.0) == 0.0  # nothing retained


# ----------------------------------------------------------------- metric
CLASSES = ('a', 'b', 'c')
CAT_IDS = (5, 7, 9)  # COCO ids differ from the label indices on purpose
# img_id -> [(label, xyxy box)]
GT = {1: [(0, [10, 10, 60, 60]), (1, [100, 100, 160, 150])],
      2: [(2, [20, 30, 90, 80]), (1, [120, 10, 190, 70])],
      3: [(0, [40, 40, 100, 110])],
      4: [(2, [5, 5, 55, 45]), (2, [100, 100, 180, 170])]}


@pytest.fixture
def ann_file(tmp_path):
    images = [dict(id=i, width=200, height=200, file_name=f'{i}.jpg')
              for i in GT]
    anns = []
    for img_id, objs in GT.items():
        for label, (x1, y1, x2, y2) in objs:
            anns.append(dict(id=len(anns) + 1, image_id=img_id, iscrowd=0,
                             category_id=CAT_IDS[label],
                             bbox=[x1, y1, x2 - x1, y2 - y1],
                             area=(x2 - x1) * (y2 - y1)))
    cats = [dict(id=i, name=n) for i, n in zip(CAT_IDS, CLASSES)]
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(
        dict(images=images, annotations=anns, categories=cats)))
    return str(path)


def _samples(with_instances=False):
    """Packed outputs: GT boxes of a and c at score 0.9, nothing of b, and
    an 'a' at score 0.4 on the 'b' object of image 2."""
    samples = []
    for img_id, objs in GT.items():
        dets = [(lab, box, 0.9) for lab, box in objs if lab != 1]
        if img_id == 2:
            dets.append((0, objs[1][1], 0.4))
        sample = dict(img_id=img_id, ori_shape=(200, 200), pred_instances=dict(
            bboxes=torch.tensor([d[1] for d in dets], dtype=torch.float32),
            scores=torch.tensor([d[2] for d in dets]),
            labels=torch.tensor([d[0] for d in dets])))
        if with_instances:
            sample['instances'] = [dict(bbox=box, bbox_label=lab,
                                        ignore_flag=0) for lab, box in objs]
        samples.append(sample)
    return samples


def _metric(ann_file=None, **kwargs):
    metric = ForgettingMetric(ann_file=ann_file, **kwargs)
    metric.dataset_meta = dict(classes=CLASSES)
    return metric


def test_metric_compute(ann_file):
    metric = _metric(ann_file, forget_classes=['b'], retained_classes=['a',
                                                                        'c'])
    metric.process({}, _samples())
    out = metric.compute_metrics(metric.results)
    assert all(isinstance(v, float) for v in out.values())
    assert out['mAP_retain'] == pytest.approx(1.0)
    assert out['mAP_forget'] == pytest.approx(0.0)
    assert out['mAP_all'] == pytest.approx(2 / 3)
    assert out['AP_a'] == pytest.approx(1.0)
    assert out['AP_b'] == pytest.approx(0.0)
    assert out['AP_c'] == pytest.approx(1.0)
    assert 'mAP_old' not in out and 'residual_old_num_gt' not in out
    assert 'h_mean' not in out
    # two 'b' objects, one covered by an 'a' at score 0.4
    assert out['residual_num_gt'] == 2.0
    for thr in ('0.1', '0.3', '0.5'):
        assert out[f'residual_own@{thr}'] == 0.0
    assert out['residual_any@0.1'] == 0.5
    assert out['residual_any@0.3'] == 0.5
    assert out['residual_any@0.5'] == 0.0


def test_metric_evaluate_old_and_h_mean(ann_file):
    metric = _metric(ann_file, forget_classes=['b'],
                     previously_forgotten=['c'], before={'mAP_forget': 0.8})
    samples = _samples()
    metric.process({}, samples[:2])
    metric.process({}, samples[2:])
    out = metric.evaluate(size=len(metric.results))
    assert all(k.startswith('forgetting/') for k in out)
    out = {k.split('/', 1)[1]: v for k, v in out.items()}
    assert out['mAP_retain'] == pytest.approx(1.0)  # retain = ['a']
    assert out['mAP_old'] == pytest.approx(1.0)
    assert out['residual_old_num_gt'] == 3.0
    assert out['residual_old_own@0.5'] == 1.0
    assert out['h_mean'] == pytest.approx(2 * 0.8 / 1.8)


def test_metric_without_ann_file_converts_gt():
    metric = _metric(forget_classes=['b'])
    metric.process({}, _samples(with_instances=True))
    out = metric.compute_metrics(metric.results)
    assert out['mAP_retain'] == pytest.approx(1.0)
    assert out['mAP_forget'] == pytest.approx(0.0)
    assert out['residual_any@0.3'] == 0.5


def test_metric_no_detections(ann_file):
    metric = _metric(ann_file, forget_classes=['b'])
    empty = dict(bboxes=torch.zeros(0, 4), scores=torch.zeros(0),
                 labels=torch.zeros(0, dtype=torch.long))
    metric.process({}, [dict(img_id=1, ori_shape=(200, 200),
                             pred_instances=empty)])
    out = metric.compute_metrics(metric.results)
    assert out['mAP_all'] == 0.0 and out['mAP_forget'] == 0.0
    assert out['residual_any@0.1'] == 0.0


def test_metric_unknown_class_lists_valid_names():
    metric = ForgettingMetric(forget_classes=['zebra'])
    with pytest.raises(ValueError, match=r"zebra.*valid names.*'a', 'b'"):
        metric.dataset_meta = dict(classes=CLASSES)


def test_metric_rejects_overlaps_and_other_metrics():
    with pytest.raises(ValueError, match='both'):
        ForgettingMetric(forget_classes=['a'], retained_classes=['a', 'c'])
    with pytest.raises(ValueError, match='both'):
        ForgettingMetric(forget_classes=['a'], previously_forgotten=['a'])
    with pytest.raises(ValueError, match='bbox'):
        ForgettingMetric(metric='segm')


# ------------------------------------------- category ids, false positives
# img_id -> [(class name, xyxy box)]
GT2 = {1: [('a', [10, 10, 60, 60]), ('b', [100, 100, 160, 150])],
       2: [('b', [20, 30, 90, 80])],
       3: [('a', [40, 40, 100, 110])],
       4: [('c', [5, 5, 55, 45]), ('c', [100, 100, 180, 170])]}


def _coco_file(path, categories, gt=GT2):
    """A COCO file with ``categories`` = [(id, name)] in the listed order."""
    ids = {name: i for i, name in categories}
    anns = [dict(id=k + 1, image_id=img, iscrowd=0, category_id=ids[name],
                 bbox=[x1, y1, x2 - x1, y2 - y1],
                 area=(x2 - x1) * (y2 - y1))
            for k, (img, name, (x1, y1, x2, y2)) in enumerate(
                (img, n, b) for img, objs in gt.items() for n, b in objs)]
    path.write_text(json.dumps(dict(
        images=[dict(id=i, width=200, height=200, file_name=f'{i}.jpg')
                for i in gt],
        annotations=anns,
        categories=[dict(id=i, name=n) for i, n in categories])))
    return str(path)


def _run(ann_file, dets, **kwargs):
    """Evaluate ``dets`` = {img_id: [(class name, box, score)]}; labels
    index CLASSES = ('a', 'b', 'c'), as the model's do."""
    metric = _metric(ann_file, **kwargs)
    for img_id in GT2:
        d = dets.get(img_id, [])
        metric.process({}, [dict(img_id=img_id, ori_shape=(200, 200),
                                 pred_instances=dict(
            bboxes=torch.tensor([b for _, b, _ in d]).reshape(-1, 4).float(),
            scores=torch.tensor([s for _, _, s in d]),
            labels=torch.tensor([CLASSES.index(n) for n, _, _ in d]).long()))])
    return metric.compute_metrics(metric.results)


def _dets(*names, extra=None):
    """GT boxes of ``names`` at score 0.9, plus ``extra`` {img: dets}."""
    return {img: [(n, box, 0.9) for n, box in objs if n in names] +
            (extra or {}).get(img, []) for img, objs in GT2.items()}


@pytest.mark.parametrize('categories', [
    [(7, 'b'), (3, 'a'), (5, 'c')],  # file order differs from classes
    [(7, 'a'), (3, 'b'), (5, 'c')],  # same order, ids not ascending
])
def test_per_class_ap_is_matched_by_category_id(tmp_path, categories):
    ann = _coco_file(tmp_path / 'ann.json', categories)
    wrong = {img: [(n, [x + 40, y + 40, x2 + 40, y2 + 40], 0.9)
                   for n, (x, y, x2, y2) in objs if n == 'b']
             for img, objs in GT2.items()}  # IoU < 0.5: every b is missed
    wrong[4] = [('c', GT2[4][0][1], 0.9)]  # one of the two c objects
    out = _run(ann, _dets('a', extra=wrong), forget_classes=['b'])
    assert out['AP_a'] == pytest.approx(1.0)
    assert out['AP_b'] == pytest.approx(0.0)
    assert out['AP_c'] == pytest.approx(51 / 101)  # recall 0.5 at p = 1
    assert out['mAP_forget'] == pytest.approx(0.0)
    assert out['mAP_retain'] == pytest.approx((1 + 51 / 101) / 2)
    assert out['residual_num_gt'] == 2.0 and out['residual_own@0.1'] == 0.0


def test_false_positives_outside_a_class_set(tmp_path):
    """Confident 'b' (forgotten) boxes on images without any 'b' object:
    AP_b (all images) drops, mAP_forget (the images showing 'b') and the
    residual detection (coverage of 'b' objects) do not, by definition.
    Likewise an 'a' box on the 'b'-only image lowers AP_a, not
    mAP_retain."""
    ann = _coco_file(tmp_path / 'ann.json', [(7, 'b'), (3, 'a'), (5, 'c')])
    base = _run(ann, _dets('a', 'b', 'c'), forget_classes=['b'])
    assert base['AP_b'] == base['AP_a'] == base['mAP_forget'] == \
        pytest.approx(1.0)
    fps = {3: [('b', GT2[3][0][1], 0.95)], 4: [('b', GT2[4][1][1], 0.95)],
           2: [('a', GT2[2][0][1], 0.95)]}
    out = _run(ann, _dets('a', 'b', 'c', extra=fps), forget_classes=['b'])
    # two FPs ranked above both TPs: precision 1/2 at full recall
    assert out['AP_b'] == pytest.approx(0.5)
    assert out['AP_a'] == pytest.approx(2 / 3)
    assert out['mAP_forget'] == pytest.approx(1.0)
    assert out['mAP_retain'] == pytest.approx(1.0)
    assert out['mAP_all'] < base['mAP_all']
    assert out['residual_own@0.5'] == base['residual_own@0.5'] == 1.0


def test_class_missing_from_the_annotation_file(tmp_path):
    ann = _coco_file(tmp_path / 'ann.json', [(7, 'b'), (3, 'a'), (5, 'x')],
                     gt={1: [('a', [10, 10, 60, 60])]})
    with pytest.raises(ValueError, match=r"\['c'\] do not name exactly one"):
        _run(ann, {}, forget_classes=['b'])
