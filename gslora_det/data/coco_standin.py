"""A COCO-shaped stand-in: COCO's 80 categories and file layout, tiny images.

It lets the COCO configs, the 7 x 10 forgetting protocol and the pre-flight
checks run where COCO itself (20 GB) is not at hand. Layout written by
:func:`make_coco_standin`, as ``data/coco`` of the COCO configs expects::

    <root>/annotations/instances_train2017.json
    <root>/annotations/instances_val2017.json
    <root>/train2017/000000000001.jpg ...
    <root>/val2017/...

Objects are coloured rectangles/ellipses on noise, 1-4 per image; their
classes cycle through all 80 categories, so each class appears in each split
(and each protocol task has forget and retain images). Image and annotation
ids are unique across both splits, as in COCO.

:func:`make_zoo_checkpoint` writes a stand-in for mmdet's model-zoo R50
Deformable DETR file (random weights), published by mmdet's own
``publish_model.py``.

Usage::

    python tools/make_coco_standin.py --out data/coco
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Tuple

import numpy as np

from gslora_det.io_utils import atomic_path, atomic_write_text

_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ZOO_CONFIG = osp.join(_REPO, 'configs', 'coco',
                      'deformable-detr_r50_16xb2-50e_coco.py')

_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard',
    'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard',
    'surfboard', 'tennis racket', 'bottle', 'wine glass', 'cup', 'fork',
    'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop',
    'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven',
    'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush')
#: COCO's category ids skip these (ids of the 2014 paper's unused classes).
COCO_ID_GAPS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
#: The 80 categories, in COCO's order, with COCO's own ids.
COCO_CATEGORIES: List[Dict] = [
    dict(id=i, name=n) for i, n in zip(
        (k for k in range(1, 91) if k not in COCO_ID_GAPS), _NAMES)
]

MAX_OBJECTS = 4
_SPLITS = (('train2017', 0), ('val2017', 1))
# Val ids start here so that ids stay unique across splits (COCO's are).
_VAL_ID_BASE = 10_000_000


def _layout(n: int, size: int,
            rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Objects of ``n`` images, vectorised (118k images in well under 1 s).

    Returns:
        dict[str, np.ndarray]: ``counts`` (n,), and per object ``image``,
        ``label`` (0..79) and ``box`` (x, y, w, h) in pixels.
    """
    num_classes = len(COCO_CATEGORIES)
    if n * MAX_OBJECTS < num_classes:
        raise ValueError(
            f'{n} images cannot hold all {num_classes} COCO classes '
            f'({MAX_OBJECTS} objects per image at most): ask for at least '
            f'{-(-num_classes // MAX_OBJECTS)} images per split')
    counts = rng.integers(1, MAX_OBJECTS + 1, size=n)
    # Top up small splits so that the class cycle covers every class.
    i = 0
    while counts.sum() < num_classes:
        counts[i] = min(MAX_OBJECTS, counts[i] + 1)
        i = (i + 1) % n
    total = int(counts.sum())
    order = rng.permutation(num_classes)
    label = order[np.arange(total) % num_classes]
    lo, hi = max(4, size // 8), max(5, size // 2)
    wh = rng.integers(lo, hi + 1, size=(total, 2))
    xy = np.floor(rng.random((total, 2)) * (size - wh + 1)).astype(np.int64)
    return dict(counts=counts, image=np.repeat(np.arange(n), counts),
                label=label, box=np.concatenate([xy, wh], axis=1))


def _palette() -> np.ndarray:
    return np.random.default_rng(1234).integers(60, 256, size=(80, 3))


def _render(size: int, boxes: np.ndarray, labels: np.ndarray,
            rng: np.random.Generator):
    """One image: objects of ``labels`` in ``boxes`` on a noisy background."""
    from PIL import Image, ImageDraw
    base = rng.integers(0, 60, size=3)
    noise = rng.normal(0, 10, size=(size, size, 3))
    img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    palette = _palette()
    for (x, y, w, h), label in zip(boxes.tolist(), labels.tolist()):
        shape = draw.ellipse if label % 2 else draw.rectangle
        shape((x, y, x + w - 1, y + h - 1), fill=tuple(palette[label]))
    return img


def _write_split(root: str, split: str, index: int, n: int, size: int,
                 seed: int, first_ann_id: int, write_images: bool,
                 progress: bool) -> Tuple[str, int]:
    """Write one split; return (annotation file, number of annotations)."""
    rng = np.random.default_rng([seed, index])
    lay = _layout(n, size, rng)
    id_base = 1 if index == 0 else _VAL_ID_BASE
    image_ids = (id_base + np.arange(n)).tolist()
    file_names = [f'{i:012d}.jpg' for i in image_ids]
    if write_images:
        img_dir = osp.join(root, split)
        os.makedirs(img_dir, exist_ok=True)
        starts = np.concatenate([[0], np.cumsum(lay['counts'])])
        step = max(1, n // 10)
        for i in range(n):
            sl = slice(starts[i], starts[i + 1])
            img = _render(size, lay['box'][sl], lay['label'][sl],
                          np.random.default_rng([seed, index, i]))
            with atomic_path(osp.join(img_dir, file_names[i])) as tmp:
                img.save(tmp, format='JPEG', quality=90)
            if progress and ((i + 1) % step == 0 or i + 1 == n):
                print(f'{split}: {i + 1}/{n} images', flush=True)
    images = [dict(id=i, file_name=f, width=size, height=size, license=1)
              for i, f in zip(image_ids, file_names)]
    cat_ids = [c['id'] for c in COCO_CATEGORIES]
    x, y, w, h = lay['box'].T.tolist()
    annotations = [
        dict(id=first_ann_id + k, image_id=image_ids[i],
             category_id=cat_ids[c], iscrowd=0, area=float(bw * bh),
             bbox=[float(bx), float(by), float(bw), float(bh)],
             segmentation=[[bx, by, bx + bw, by, bx + bw, by + bh, bx,
                            by + bh]])
        for k, (i, c, bx, by, bw, bh) in enumerate(zip(
            lay['image'].tolist(), lay['label'].tolist(), x, y, w, h))]
    coco = dict(
        info=dict(description='gslora_det COCO stand-in (synthetic)',
                  seed=seed, split=split),
        licenses=[dict(id=1, name='synthetic', url='')],
        images=images, annotations=annotations,
        categories=[dict(c, supercategory='object')
                    for c in COCO_CATEGORIES])
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    atomic_write_text(ann_file, json.dumps(coco, separators=(',', ':')))
    return ann_file, len(annotations)


def make_coco_standin(root: str,
                      num_train: int = 240,
                      num_val: int = 60,
                      image_size: int = 64,
                      seed: int = 0,
                      write_images: bool = True,
                      progress: bool = True) -> Dict:
    """Write a COCO-shaped stand-in under ``root``.

    Args:
        root (str): Output folder (``data/coco`` for the COCO configs).
        num_train (int): Train images (at least 20). Defaults to 240.
        num_val (int): Val images (at least 20). Defaults to 60.
        image_size (int): Side of the square images in pixels. Defaults
            to 64.
        seed (int): Seed; the same seed gives the same files. Defaults to 0.
        write_images (bool): Also write the JPEGs. False writes only the
            JSON files (e.g. a 118,287-image file to time pre-flight
            checks). Defaults to True.
        progress (bool): Print ``i/N`` while writing images. Defaults to
            True.

    Returns:
        dict: ``root``, ``train_ann`` / ``val_ann`` (JSON paths),
        ``train_img_dir`` / ``val_img_dir``, ``num_train`` / ``num_val``
        (images), ``num_train_ann`` / ``num_val_ann`` (annotations).
    """
    if image_size < 16:
        raise ValueError(f'image_size must be at least 16, got {image_size}')
    out = dict(root=root)
    next_ann_id = 1
    for (split, index), n in zip(_SPLITS, (num_train, num_val)):
        key = split[:-4]  # 'train' / 'val'
        ann_file, num_ann = _write_split(root, split, index, n, image_size,
                                         seed, next_ann_id, write_images,
                                         progress)
        next_ann_id += num_ann
        out.update({f'{key}_ann': ann_file,
                    f'{key}_img_dir': osp.join(root, split),
                    f'num_{key}': n, f'num_{key}_ann': num_ann})
    return out


def _publish_model_script() -> str:
    """mmdet's own ``publish_model.py`` (shipped inside the package)."""
    import mmdet
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools',
                    'model_converters', 'publish_model.py')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'mmdet publish_model.py not found at {path}: reinstall mmdet '
            '3.x from PyPI (the wheel ships its tools under mmdet/.mim)')
    return path


def make_zoo_checkpoint(out_dir: str,
                        config: str = ZOO_CONFIG,
                        seed: int = 0,
                        timeout: float = 120.0) -> str:
    """Write a stand-in for a model-zoo checkpoint of ``config``.

    The model is built with random weights (the backbone's ``init_cfg`` is
    dropped: nothing is downloaded), saved as an mmengine training run
    saves it (``meta`` + ``state_dict``), then published by mmdet's
    ``publish_model.py`` exactly as zoo files are made: legacy (non-zip)
    serialization, named ``<config name>-<sha256[:8]>.pth``.

    Args:
        out_dir (str): Folder of the published file.
        config (str): Model config. Defaults to the repo's R50 Deformable
            DETR COCO config.
        seed (int): Seed of the random weights. Defaults to 0.
        timeout (float): Seconds to wait for publish_model.py's
            asynchronous ``mv``. Defaults to 120.

    Returns:
        str: Path of the published checkpoint.
    """
    import mmengine
    import torch
    from mmengine.config import Config
    from mmengine.runner.checkpoint import (get_state_dict, save_checkpoint,
                                            weights_to_cpu)
    from mmdet.datasets import CocoDataset
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    if not osp.isfile(config):
        raise FileNotFoundError(
            f'config not found: {config} (pass config= the path of an '
            'mmdet model config, e.g. from a source checkout of gslora_det)')
    register_all_modules()
    cfg = Config.fromfile(config)
    backbone = cfg.model.get('backbone', {})
    backbone.pop('init_cfg', None)
    backbone.pop('pretrained', None)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    name = osp.splitext(osp.basename(config))[0]
    meta = dict(
        epoch=cfg.get('train_cfg', {}).get('max_epochs', 0), iter=0,
        cfg=cfg.pretty_text, seed=seed, experiment_name=name,
        time=time.strftime('%Y%m%d_%H%M%S', time.localtime()),
        mmengine_version=mmengine.__version__,
        dataset_meta=dict(CocoDataset.METAINFO))
    os.makedirs(out_dir, exist_ok=True)
    raw = osp.join(out_dir, f'.{name}.train.pth')
    save_checkpoint(dict(meta=meta,
                         state_dict=weights_to_cpu(get_state_dict(model))),
                    raw)
    target = osp.join(out_dir, f'{name}.pth')
    try:
        proc = subprocess.run(
            [sys.executable, _publish_model_script(), raw, target],
            capture_output=True, text=True, timeout=timeout)
    finally:
        os.remove(raw)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f'publish_model.py failed ({proc.returncode}):\n'
                           f'{log[-3000:]}')
    found = re.search(re.escape(target[:-4]) + r'-[0-9a-f]{8}\.pth', log)
    if not found:
        raise RuntimeError(f'publish_model.py did not name its output:\n'
                           f'{log[-3000:]}')
    final = found.group(0)
    # publish_model.py renames with a detached `mv`: wait for it to finish.
    deadline = time.time() + timeout
    while time.time() < deadline:
        if osp.isfile(final) and not osp.exists(target):
            return final
        time.sleep(0.05)
    raise TimeoutError(f'publish_model.py did not move {target} to its '
                       f'final name within {timeout:.0f}s:\n{log[-3000:]}')
