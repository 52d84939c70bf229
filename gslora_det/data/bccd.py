"""BCCD (blood cell detection, VOC XML) -> COCO JSON, with its quirks fixed.

BCCD (github.com/Shenggan/BCCD_Dataset, MIT): 364 microscope photos of
640 x 480 px, 3 classes (RBC, WBC, Platelets), Pascal-VOC layout
(``BCCD/{Annotations,JPEGImages,ImageSets/Main}``). Quirks found in the
files and what the conversion does about them:

* zero-area boxes (``xmin == xmax``; 2 RBC boxes): dropped;
* duplicated boxes: the same cell annotated twice, the copy shifted by
  2 px (IoU >= 0.9, same class; 7 RBC boxes): the later copy is dropped;
* boxes past the image border (none in the published files, common in
  forks): clipped to the image, dropped if nothing is left;
* class names: matched case- and space-insensitively against known
  spellings (``Platelet``, ``platelets``, ``rbc`` ...); an unknown name is
  an error rather than a silently new class;
* the XML ``<path>`` is an absolute path of the annotator's machine and the
  ``<size>`` may disagree with forks' re-encoded images: the file name and
  the JPEG's real size are used.

Split: the dataset's own ``ImageSets/Main`` lists, ``trainval`` (292) for
training and ``test`` (72) for validation. Images are never copied: the
output folder gets a relative symlink ``images -> <src>/BCCD/JPEGImages``.
"""
import json
import os
import os.path as osp
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Dict, List, Sequence, Tuple

from PIL import Image

BCCD_CLASSES = ('RBC', 'WBC', 'Platelets')
#: Lower-cased, space-free spellings seen in BCCD and its forks.
_ALIASES = {'rbc': 'RBC', 'redbloodcell': 'RBC', 'wbc': 'WBC',
            'whitebloodcell': 'WBC', 'platelets': 'Platelets',
            'platelet': 'Platelets', 'plt': 'Platelets'}
DUPLICATE_IOU = 0.9
SPLITS = {'train': 'trainval', 'val': 'test'}


def canonical_class(name: str, xml_path: str) -> str:
    """The BCCD class of an XML ``<name>``; raises ValueError if unknown."""
    key = ''.join((name or '').split()).lower()
    if key not in _ALIASES:
        raise ValueError(
            f'{xml_path}: unknown class name {name!r}; BCCD has '
            f'{list(BCCD_CLASSES)}. Add the spelling to _ALIASES in '
            'gslora_det/data/bccd.py if it is one of them.')
    return _ALIASES[key]


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
             - inter)
    return inter / union if union > 0 else 0.0


def parse_voc(xml_path: str, width: int, height: int,
              fixes: Counter) -> List[Tuple[str, List[float]]]:
    """Clean ``(class, [x1, y1, x2, y2])`` boxes of one VOC XML file.

    Args:
        xml_path: The annotation file.
        width, height: The image's real size (boxes are clipped to it).
        fixes: Counts of each applied fix, updated in place.
    """
    boxes: List[Tuple[str, List[float]]] = []
    for obj in ET.parse(xml_path).getroot().findall('object'):
        raw = obj.findtext('name')
        name = canonical_class(raw, xml_path)
        if name != raw:
            fixes['class name normalised'] += 1
        bnd = obj.find('bndbox')
        x1, y1, x2, y2 = (float(bnd.findtext(k))
                          for k in ('xmin', 'ymin', 'xmax', 'ymax'))
        box = [min(max(x1, 0.0), width), min(max(y1, 0.0), height),
               min(max(x2, 0.0), width), min(max(y2, 0.0), height)]
        if box != [x1, y1, x2, y2]:
            fixes['box clipped to the image'] += 1
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            fixes['degenerate box dropped'] += 1
            continue
        if any(n == name and _iou(box, b) >= DUPLICATE_IOU
               for n, b in boxes):
            fixes['duplicate box dropped'] += 1
            continue
        boxes.append((name, box))
    return boxes


def _read_split(voc_root: str, name: str) -> List[str]:
    path = osp.join(voc_root, 'ImageSets', 'Main', f'{name}.txt')
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def find_voc_root(src: str) -> str:
    """``src`` or ``src/BCCD``: the folder holding ``Annotations``."""
    for root in (src, osp.join(src, 'BCCD')):
        if osp.isdir(osp.join(root, 'Annotations')):
            return root
    raise FileNotFoundError(
        f'no BCCD data at {src!r} (expected {src}/BCCD/Annotations). '
        'Download https://github.com/Shenggan/BCCD_Dataset and pass its '
        'folder with --src.')


def convert_bccd(src: str, out: str) -> Dict[str, Dict]:
    """Write ``out/annotations/instances_{train,val}.json`` and the
    ``out/images`` symlink.

    Args:
        src: The BCCD folder (holding ``BCCD/`` or ``Annotations/``).
        out: Output folder, e.g. ``data/bccd``.

    Returns:
        dict: split -> {'images', 'annotations', 'per_class', 'fixes'}.
    """
    voc = find_voc_root(src)
    img_dir = osp.join(voc, 'JPEGImages')
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    link = osp.join(out, 'images')
    target = osp.relpath(osp.abspath(img_dir), osp.abspath(out))
    if osp.islink(link) and os.readlink(link) != target:
        os.remove(link)  # a previous conversion from another source
    if not osp.lexists(link):
        os.symlink(target, link)
    categories = [dict(id=i + 1, name=n, supercategory='cell')
                  for i, n in enumerate(BCCD_CLASSES)]
    cat_id = {c['name']: c['id'] for c in categories}
    stats = {}
    for split, listed in SPLITS.items():
        images, anns, fixes = [], [], Counter()
        for img_id, stem in enumerate(_read_split(voc, listed), start=1):
            file_name = f'{stem}.jpg'
            with Image.open(osp.join(img_dir, file_name)) as im:
                width, height = im.size
            images.append(dict(id=img_id, file_name=file_name, width=width,
                               height=height))
            for name, (x1, y1, x2, y2) in parse_voc(
                    osp.join(voc, 'Annotations', f'{stem}.xml'), width,
                    height, fixes):
                anns.append(dict(
                    id=len(anns) + 1, image_id=img_id,
                    category_id=cat_id[name], bbox=[x1, y1, x2 - x1, y2 - y1],
                    area=(x2 - x1) * (y2 - y1), iscrowd=0))
        ann_file = osp.join(out, 'annotations', f'instances_{split}.json')
        tmp = ann_file + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(dict(images=images, annotations=anns,
                           categories=categories), f)
        os.replace(tmp, ann_file)  # never leave a half-written file
        per_class = Counter(BCCD_CLASSES[a['category_id'] - 1] for a in anns)
        stats[split] = dict(images=len(images), annotations=len(anns),
                            per_class=dict(per_class), fixes=dict(fixes))
    return stats


def bccd_converted(out: str) -> bool:
    """Whether ``out`` holds a finished conversion."""
    return all(osp.isfile(osp.join(out, 'annotations',
                                   f'instances_{s}.json'))
               for s in SPLITS) and osp.isdir(osp.join(out, 'images'))
