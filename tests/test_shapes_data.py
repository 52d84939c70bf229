"""The built-in shapes generator: deterministic, valid COCO, sane boxes."""
import filecmp
import json
import os.path as osp

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from gslora_det.data.shapes import (IMAGE_SIZE, SHAPES_CLASS_NAMES,
                                    generate_shapes_dataset,
                                    shapes_dataset_ready)


def make(root, seed=0, n=12):
    return generate_shapes_dataset(str(root), num_train=n, num_val=4,
                                   seed=seed, progress=False)


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a, b, c = (make(tmp_path / 'a'), make(tmp_path / 'b'),
               make(tmp_path / 'c', seed=1))
    for split in ('train', 'val'):
        assert filecmp.cmp(a[split], b[split], shallow=False)
        assert not filecmp.cmp(a[split], c[split], shallow=False)
    same = filecmp.cmp(tmp_path / 'a' / 'train' / '000005.png',
                       tmp_path / 'b' / 'train' / '000005.png',
                       shallow=False)
    other = filecmp.cmp(tmp_path / 'a' / 'train' / '000005.png',
                        tmp_path / 'c' / 'train' / '000005.png',
                        shallow=False)
    assert same and not other
    # image i does not depend on how many images are generated
    make(tmp_path / 'd', n=20)
    assert filecmp.cmp(tmp_path / 'a' / 'train' / '000007.png',
                       tmp_path / 'd' / 'train' / '000007.png',
                       shallow=False)


def test_valid_coco_with_real_images_and_sane_boxes(tmp_path):
    files = make(tmp_path, n=40)
    coco = COCO(files['train'])
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(
        SHAPES_CLASS_NAMES)
    assert len(SHAPES_CLASS_NAMES) >= 8
    assert len(coco.getImgIds()) == 40
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        img = Image.open(osp.join(tmp_path, 'train', info['file_name']))
        assert img.size == (IMAGE_SIZE, IMAGE_SIZE) and img.mode == 'RGB'
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        assert 1 <= len(anns) <= 4
        boxes = np.array([a['bbox'] for a in anns])
        assert (boxes[:, :2] >= 0).all()
        assert (boxes[:, 0] + boxes[:, 2] <= IMAGE_SIZE).all()
        assert (boxes[:, 1] + boxes[:, 3] <= IMAGE_SIZE).all()
        assert (boxes[:, 2:] > 0).all()
        for a in anns:
            assert a['area'] == a['bbox'][2] * a['bbox'][3]
        # no two objects overlap
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                x0, y0, w0, h0 = boxes[i]
                x1, y1, w1, h1 = boxes[j]
                assert (x0 + w0 <= x1 or x1 + w1 <= x0 or y0 + h0 <= y1
                        or y1 + h1 <= y0)
    # every class appears
    assert {a['category_id'] for a in coco.dataset['annotations']} == set(
        range(1, 9))


def test_objects_differ_from_background(tmp_path):
    files = make(tmp_path, n=6)
    with open(files['train']) as f:
        coco = json.load(f)
    ann = coco['annotations'][0]
    img = np.asarray(Image.open(tmp_path / 'train' / '000000.png'),
                     dtype=float)
    x, y, w, h = (int(v) for v in ann['bbox'])
    inside = img[y:y + h, x:x + w].max(axis=(0, 1))
    assert inside.max() > 150  # a bright shape on a dark background


def test_ready_flag(tmp_path):
    assert not shapes_dataset_ready(str(tmp_path))
    make(tmp_path)
    assert shapes_dataset_ready(str(tmp_path))
    assert shapes_dataset_ready(str(tmp_path), num_train=12, seed=0)
    assert not shapes_dataset_ready(str(tmp_path), num_train=2000)
