"""Built-in synthetic detection set: coloured shapes on a noisy background.

The set exists so that the whole product (pretraining, forgetting, evaluation)
runs on a laptop CPU in minutes. Every class differs from the others in both
shape and colour, so a tiny detector learns it quickly, and forgetting one
class is a clean, measurable event.

Layout written by :func:`generate_shapes_dataset`::

    <root>/train/000000.png ...        128 x 128 RGB images
    <root>/val/000000.png ...
    <root>/annotations/instances_train.json   COCO format, category ids 1..8
    <root>/annotations/instances_val.json

Usage::

    python tools/make_shapes.py --out data/shapes --num-train 2000 --num-val 200
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from gslora_det.io_utils import atomic_write_text

#: (class name, shape, RGB colour). Order defines the category ids (1-based).
SHAPES_CLASSES: Tuple[Tuple[str, str, Tuple[int, int, int]], ...] = (
    ('red_circle', 'circle', (230, 40, 40)),
    ('green_square', 'square', (40, 200, 60)),
    ('blue_triangle', 'triangle', (50, 90, 240)),
    ('yellow_diamond', 'diamond', (240, 220, 40)),
    ('magenta_cross', 'cross', (220, 50, 220)),
    ('cyan_ring', 'ring', (40, 220, 230)),
    ('orange_star', 'star', (250, 140, 20)),
    ('white_hexagon', 'hexagon', (245, 245, 245)),
)
SHAPES_CLASS_NAMES: Tuple[str, ...] = tuple(c[0] for c in SHAPES_CLASSES)

IMAGE_SIZE = 128
MIN_OBJ, MAX_OBJ = 1, 4
#: Object side length range in pixels: large enough for a stride-32 feature
#: map of a 128-px image to see, small enough for four to fit without overlap.
MIN_SIDE, MAX_SIDE = 18, 44
#: Rejection-sampling attempts per object before giving up on placing it.
_PLACE_ATTEMPTS = 50


def _polygon(cx: float, cy: float, r: float, n: int,
             phase: float = 0.0) -> List[Tuple[float, float]]:
    return [(cx + r * math.cos(phase + 2 * math.pi * k / n),
             cy + r * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str,
                box: Tuple[int, int, int, int], color: Tuple[int, int, int]):
    """Draw ``shape`` filling the square ``box`` = (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == 'circle':
        draw.ellipse(box, fill=color)
    elif shape == 'square':
        draw.rectangle(box, fill=color)
    elif shape == 'triangle':
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=color)
    elif shape == 'diamond':
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=color)
    elif shape == 'cross':
        t = (x1 - x0) / 6
        draw.rectangle((x0, cy - t, x1, cy + t), fill=color)
        draw.rectangle((cx - t, y0, cx + t, y1), fill=color)
    elif shape == 'ring':
        w = max(3, int((x1 - x0) / 5))
        draw.ellipse(box, outline=color, width=w)
    elif shape == 'star':
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            ang = -math.pi / 2 + math.pi * k / 5
            pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
        draw.polygon(pts, fill=color)
    elif shape == 'hexagon':
        draw.polygon(_polygon(cx, cy, r, 6), fill=color)
    else:
        raise ValueError(f'unknown shape {shape!r}')


def _overlaps(box, others) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1
               for b in others)


def render_image(rng: np.random.Generator,
                 size: int = IMAGE_SIZE) -> Tuple[Image.Image, List[Dict]]:
    """Render one image and its objects.

    Args:
        rng (np.random.Generator): Source of all randomness for this image.
        size (int): Side of the square image in pixels. Defaults to 128.

    Returns:
        tuple[Image.Image, list[dict]]: The image and a list of objects, each
        ``{'category_id': int (1-based), 'bbox': [x, y, w, h]}``.
    """
    # Dark noisy background so that colour alone is not a trivial cue for
    # "object vs. background".
    base = rng.integers(10, 70, size=3)
    noise = rng.normal(0, 12, size=(size, size, 3))
    bg = np.clip(base[None, None, :] + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(bg, 'RGB')
    draw = ImageDraw.Draw(img)
    boxes, objects = [], []
    for _ in range(int(rng.integers(MIN_OBJ, MAX_OBJ + 1))):
        for _ in range(_PLACE_ATTEMPTS):
            side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
            x0 = int(rng.integers(0, size - side + 1))
            y0 = int(rng.integers(0, size - side + 1))
            # Non-overlapping with a 2-px margin keeps the boxes unambiguous.
            box = (x0, y0, x0 + side, y0 + side)
            padded = (x0 - 2, y0 - 2, x0 + side + 2, y0 + side + 2)
            if not _overlaps(padded, boxes):
                break
        else:
            continue
        cls = int(rng.integers(0, len(SHAPES_CLASSES)))
        _, shape, color = SHAPES_CLASSES[cls]
        jitter = rng.integers(-25, 26, size=3)
        color = tuple(int(c) for c in np.clip(np.array(color) + jitter, 0,
                                              255))
        _draw_shape(draw, shape, (box[0], box[1], box[2] - 1, box[3] - 1),
                    color)
        boxes.append(box)
        objects.append(dict(category_id=cls + 1,
                            bbox=[float(x0), float(y0), float(side),
                                  float(side)]))
    return img, objects


def _generate_split(root: str, split: str, num_images: int, seed: int,
                    progress: bool = True) -> str:
    img_dir = osp.join(root, split)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    split_offset = {'train': 0, 'val': 1}.get(split, 2)
    iterator = range(num_images)
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc=f'shapes/{split}', unit='img')
    for i in iterator:
        # One generator per image: the set is reproducible image by image,
        # whatever the number of images asked for.
        rng = np.random.default_rng([seed, split_offset, i])
        img, objects = render_image(rng)
        file_name = f'{i:06d}.png'
        tmp = osp.join(img_dir, f'.{file_name}.tmp.png')
        img.save(tmp)
        os.replace(tmp, osp.join(img_dir, file_name))
        images.append(dict(id=i + 1, file_name=file_name, width=IMAGE_SIZE,
                           height=IMAGE_SIZE))
        for obj in objects:
            w, h = obj['bbox'][2:]
            annotations.append(dict(id=len(annotations) + 1, image_id=i + 1,
                                    category_id=obj['category_id'],
                                    bbox=obj['bbox'], area=w * h, iscrowd=0))
    coco = dict(
        info=dict(description='gslora_det built-in shapes', seed=seed,
                  split=split),
        images=images, annotations=annotations,
        categories=[dict(id=k + 1, name=name, supercategory='shape')
                    for k, name in enumerate(SHAPES_CLASS_NAMES)])
    ann_dir = osp.join(root, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    ann_file = osp.join(ann_dir, f'instances_{split}.json')
    atomic_write_text(ann_file, json.dumps(coco))
    return ann_file


def generate_shapes_dataset(root: str,
                            num_train: int = 2000,
                            num_val: int = 200,
                            seed: int = 0,
                            progress: bool = True) -> Dict[str, str]:
    """Write the built-in shapes set under ``root``.

    Args:
        root (str): Output folder.
        num_train (int): Training images. Defaults to 2000.
        num_val (int): Validation images. Defaults to 200.
        seed (int): Seed; the same seed gives byte-identical files.
            Defaults to 0.
        progress (bool): Show a progress bar. Defaults to True.

    Returns:
        dict[str, str]: ``{'train': ann_file, 'val': ann_file}``.
    """
    return {
        split: _generate_split(root, split, n, seed, progress)
        for split, n in (('train', num_train), ('val', num_val))
    }


def shapes_dataset_ready(root: str, num_train: Optional[int] = None,
                         num_val: Optional[int] = None,
                         seed: Optional[int] = None) -> bool:
    """Whether ``root`` holds a finished set (optionally of the given size
    and seed). The JSON files are written last, so their presence means the
    images are complete."""
    wanted = {'train': num_train, 'val': num_val}
    for split, n in wanted.items():
        ann = osp.join(root, 'annotations', f'instances_{split}.json')
        if not osp.isfile(ann):
            return False
        with open(ann) as f:
            coco = json.load(f)
        if n is not None and len(coco['images']) != n:
            return False
        if seed is not None and coco.get('info', {}).get('seed') != seed:
            return False
    return True

