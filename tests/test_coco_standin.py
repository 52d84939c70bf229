"""The COCO stand-in: COCO's categories and layout, loadable by mmdet, every
class in both splits, and a zoo-style checkpoint as publish_model.py makes
it."""
import json
import os.path as osp
import re
import time
import zipfile

import pytest

from gslora_det.data.coco_standin import (COCO_CATEGORIES, COCO_ID_GAPS,
                                          make_coco_standin)

SPLITS = ('train2017', 'val2017')


def _ann(root, split):
    path = osp.join(str(root), 'data', 'coco', 'annotations',
                    f'instances_{split}.json')
    with open(path) as f:
        return json.load(f)


def test_categories_match_mmdet_and_coco_ids():
    from mmdet.datasets import CocoDataset
    assert tuple(c['name'] for c in COCO_CATEGORIES) == \
        tuple(CocoDataset.METAINFO['classes'])
    ids = [c['id'] for c in COCO_CATEGORIES]
    assert ids == sorted(ids) and len(ids) == 80 and ids[-1] == 90
    assert set(range(1, 91)) - set(ids) == set(COCO_ID_GAPS) == {
        12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


@pytest.mark.parametrize('split', SPLITS)
def test_every_class_in_each_split_with_valid_boxes(coco_standin, split):
    coco = _ann(coco_standin, split)
    assert [dict(id=c['id'], name=c['name']) for c in coco['categories']] \
        == COCO_CATEGORIES
    assert {a['category_id'] for a in coco['annotations']} == \
        {c['id'] for c in COCO_CATEGORIES}
    sizes = {im['id']: (im['width'], im['height']) for im in coco['images']}
    per_image = {}
    for a in coco['annotations']:
        x, y, w, h = a['bbox']
        width, height = sizes[a['image_id']]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= width and y + h <= height
        assert a['area'] == w * h and a['iscrowd'] == 0
        per_image[a['image_id']] = per_image.get(a['image_id'], 0) + 1
    assert set(per_image) == set(sizes)
    assert 1 <= min(per_image.values()) <= max(per_image.values()) <= 4
    for im in coco['images']:
        assert osp.isfile(osp.join(str(coco_standin), 'data', 'coco', split,
                                   im['file_name']))


def test_ids_unique_across_splits(coco_standin):
    train, val = (_ann(coco_standin, s) for s in SPLITS)
    assert (len(train['images']), len(val['images'])) == (80, 20)
    for key in ('images', 'annotations'):
        ids = [x['id'] for x in train[key] + val[key]]
        assert len(ids) == len(set(ids)), key


def test_mmdet_coco_dataset_loads_it(coco_standin):
    from mmdet.datasets import CocoDataset
    ds = CocoDataset(data_root=osp.join(str(coco_standin), 'data', 'coco'),
                     ann_file='annotations/instances_val2017.json',
                     data_prefix=dict(img='val2017/'), pipeline=[])
    assert len(ds.metainfo['classes']) == 80 and len(ds) == 20
    assert osp.isfile(ds[0]['img_path'])
    assert ds.cat_ids == [c['id'] for c in COCO_CATEGORIES]


@pytest.mark.parametrize('task', [1, 7])
def test_protocol_task_has_forget_and_retain_images(coco_standin, task):
    from gslora_det.data.coco_protocol import (coco_previously_forgotten,
                                               coco_task_classes)
    from gslora_det.data.forget_split import ForgetRetainCocoDataset
    for split in SPLITS:
        for role in ('forget', 'retain'):
            ds = ForgetRetainCocoDataset(
                role=role, forget_classes=coco_task_classes(task),
                previously_forgotten=coco_previously_forgotten(task),
                sample_ratio=None,
                data_root=osp.join(str(coco_standin), 'data', 'coco'),
                ann_file=f'annotations/instances_{split}.json',
                data_prefix=dict(img=f'{split}/'), pipeline=[])
            assert len(ds) > 0, (split, role)


def test_annotations_only_full_coco_size_is_fast(tmp_path):
    start = time.process_time()  # CPU time: robust to a busy machine
    out = make_coco_standin(str(tmp_path), num_train=118287, num_val=20,
                            write_images=False, progress=False)
    assert time.process_time() - start < 20
    assert not osp.exists(out['train_img_dir'])
    with open(out['train_ann']) as f:
        assert len(json.load(f)['images']) == 118287


def test_too_few_images_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match='at least 20 images'):
        make_coco_standin(str(tmp_path), num_train=10, progress=False)


def test_zoo_checkpoint_is_published_like_the_model_zoo(zoo_checkpoint):
    from gslora_det.checkpoint import load_checkpoint_safely, sha256_file
    name = osp.basename(zoo_checkpoint)
    found = re.fullmatch(r'deformable-detr_r50_16xb2-50e_coco-([0-9a-f]{8})'
                         r'\.pth', name)
    assert found and sha256_file(zoo_checkpoint).startswith(found.group(1))
    # publish_model.py saves with _use_new_zipfile_serialization=False.
    assert not zipfile.is_zipfile(zoo_checkpoint)
    ckpt = load_checkpoint_safely(zoo_checkpoint)
    assert set(ckpt) == {'meta', 'state_dict'}
    assert ckpt['meta']['dataset_meta']['classes'][0] == 'person'
    assert 'backbone.layer4.2.conv3.weight' in ckpt['state_dict']
    assert 'bbox_head.cls_branches.0.weight' in ckpt['state_dict']
