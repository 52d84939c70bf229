"""Checks of a COCO-format annotation file and its images, before training.

mmdet reads a broken annotation file without complaint (unknown category
ids and boxes outside the image are silently dropped or clipped) and finds a
missing or corrupt image only when a data-loader worker reaches it, possibly
hours into a run. These checks run once per task and process (rank 0 of a multi-process
run), before training, and name the file, the offending entries and the
fix. They stay bounded at COCO scale: the file is parsed once per process
(:mod:`gslora_det.data.coco_cache`, shared with the datasets), every entry's
structure, references and box are checked (pure Python, ~2 s for
train2017's 860k boxes), and a seeded sample of the image files is checked
to exist and to open (every file of a small set; opening all 118k train2017
images would take minutes, and a missing file still fails loudly in the
data loader).
"""
import os
import os.path as osp
import random
from typing import Dict, List, Optional, Tuple

from PIL import Image

from gslora_det.data import coco_cache

#: Boxes may overhang the image border by this many pixels (rounding in
#: annotation tools) before they count as outside.
BOX_TOLERANCE_PX = 1.0
#: Image files checked (exist and open); beyond this, a seeded sample of
#: this size is.
MAX_IMAGES_CHECKED = 1000
_SHOWN = 5
_cache: Dict[Tuple[str, float, str], None] = {}


class InvalidAnnotations(ValueError):
    """An annotation file or image folder that cannot be trained on."""


def _fail(path: str, problem: str, items: List, fix: str) -> None:
    shown = ', '.join(str(i) for i in items[:_SHOWN])
    more = f' (+{len(items) - _SHOWN} more)' if len(items) > _SHOWN else ''
    raise InvalidAnnotations(f'{path}: {problem}: {shown}{more}. {fix}')


def _check_structure(path: str, coco) -> None:
    if not isinstance(coco, dict):
        raise InvalidAnnotations(f'{path}: not a COCO annotation file (a '
                                 'JSON object with "images", "annotations" '
                                 'and "categories" is expected)')
    missing = [k for k in ('images', 'annotations', 'categories')
               if not isinstance(coco.get(k), list)]
    if missing:
        raise InvalidAnnotations(
            f'{path}: not valid COCO: missing or non-list key(s) {missing}; '
            'a COCO detection file needs "images", "annotations" and '
            '"categories" lists')
    for key, fields in (('images', ('id', 'file_name', 'width', 'height')),
                        ('categories', ('id', 'name')),
                        ('annotations', ('id', 'image_id', 'category_id',
                                         'bbox'))):
        bad = [i for i, entry in enumerate(coco[key])
               if not isinstance(entry, dict)
               or any(f not in entry for f in fields)]
        if bad:
            _fail(path, f'{key} entries without all of {list(fields)} '
                  '(list positions)', bad, 'Add the missing fields.')


def _check_references_and_boxes(path: str, coco) -> None:
    images = {img['id']: img for img in coco['images']}
    cat_ids = {c['id'] for c in coco['categories']}
    unknown_img = [a['id'] for a in coco['annotations']
                   if a['image_id'] not in images]
    if unknown_img:
        _fail(path, 'annotations refer to image ids that are not in '
              '"images" (annotation ids)', unknown_img,
              'Remove them or add the images.')
    unknown_cat = sorted({a['category_id'] for a in coco['annotations']
                          if a['category_id'] not in cat_ids})
    if unknown_cat:
        _fail(path, f'annotations use category ids that are not in '
              f'"categories" (known: {sorted(cat_ids)}); unknown ids',
              unknown_cat, 'Add the categories or drop those annotations.')
    outside = []
    for a in coco['annotations']:
        box, img = a['bbox'], images[a['image_id']]
        if (not isinstance(box, (list, tuple)) or len(box) != 4
                or box[2] < 0 or box[3] < 0):
            outside.append(f'ann {a["id"]}: bbox {box} is not [x, y, w, h] '
                           'with w, h >= 0')
            continue
        x, y, w, h = box
        t = BOX_TOLERANCE_PX
        if (x < -t or y < -t or x + w > img['width'] + t
                or y + h > img['height'] + t):
            outside.append(f'ann {a["id"]} {list(box)} in image '
                           f'{img["id"]} ({img["width"]}x{img["height"]})')
    if outside:
        _fail(path, f'{len(outside)} box(es) are malformed or lie outside '
              'their image', outside,
              'Fix or drop these annotations (boxes are [x, y, w, h] in '
              'pixels).')


def _check_images(path: str, coco, img_dir: str, seed: int = 0) -> int:
    """Check (a sample of) the image files; return how many were checked."""
    names = [img['file_name'] for img in coco['images']]
    to_open = names
    if len(names) > MAX_IMAGES_CHECKED:
        to_open = random.Random(seed).sample(names, MAX_IMAGES_CHECKED)
    missing = [n for n in to_open if not osp.isfile(osp.join(img_dir, n))]
    if missing:
        sampled = ('' if len(to_open) == len(names) else
                   f' (of a sample of {len(to_open)})')
        _fail(path, f'{len(missing)} image file(s) listed in "images" are '
              f'missing from {img_dir}{sampled}', missing,
              'Point data_prefix.img at the image folder or restore the '
              'files.')
    corrupt = []
    for name in to_open:
        try:
            with Image.open(osp.join(img_dir, name)) as im:
                im.verify()
        except Exception as err:  # PIL raises many types for bad files
            corrupt.append(f'{name} ({type(err).__name__})')
    if corrupt:
        _fail(path, f'{len(corrupt)} image file(s) cannot be read', corrupt,
              'Replace or remove them (and their annotations).')
    return len(to_open)


def validate_coco(ann_file: str, img_dir: Optional[str] = None,
                  log=None) -> None:
    """Validate a COCO detection file and (optionally) its images.

    Args:
        ann_file (str): The annotation JSON.
        img_dir (str, optional): The folder ``file_name`` is relative to;
            None skips the image checks.

    Raises:
        InvalidAnnotations: with the file, the offending entries and the
            fix.
        log (callable, optional): Receives one line saying what was
            checked.
    """
    key = (osp.abspath(ann_file), os.stat(ann_file).st_mtime, img_dir or '')
    if key in _cache:
        return
    try:
        coco = coco_cache.load_json(ann_file)
    except ValueError as err:
        raise InvalidAnnotations(str(err)) from err
    _check_structure(ann_file, coco)
    _check_references_and_boxes(ann_file, coco)
    checked = None
    if img_dir is not None:
        checked = _check_images(ann_file, coco, img_dir)
    if log is not None:
        n = len(coco['images'])
        files = ('' if checked is None else
                 f'; image files exist and open: '
                 f'{"all " if checked == n else ""}{checked} of {n}')
        log(f'pre-flight: {ann_file}: {n} images, '
            f'{len(coco["annotations"])} boxes, {len(coco["categories"])} '
            f'categories: structure, ids and boxes checked{files}')
    _cache[key] = None
