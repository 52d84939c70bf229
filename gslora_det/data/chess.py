"""Chess pieces (Roboflow COCO export) -> downscaled COCO, quirks fixed.

The set (jsansao/ChessPiecesv23, a Roboflow export of
public.roboflow.ai/object-detection/chess-full, Public Domain): 289 photos
of 2048 x 1371 px taken from one angle, one COCO JSON per split
(``{train,valid,test}/_annotations.coco.json``: 202 / 58 / 29 images),
12 classes ``white-`` / ``black-`` x king, queen, bishop, knight, rook,
pawn. Quirks found in the files and what the conversion does about them:

* category id 0 is the supercategory ``pieces`` (every other category's
  ``supercategory``) and holds no boxes: dropped (any box in it would be
  dropped and counted);
* category id 1 ``bishop`` holds one stray box of neither colour: dropped
  and counted (the class cannot be mapped to one of the 12);
* ids start at 0 (images and annotations). pycocotools' COCOeval stores the
  id of the matched ground truth in ``dtm`` and counts ``dtm > 0`` as true
  positives, so a detection matched to annotation id 0 would count as a
  false positive: both are renumbered from 1;
* zero-area boxes and boxes past the image border (none in the published
  files): clipped to the image, dropped if under 1 px wide or high, counted;
  likewise after downscaling;
* one image has no boxes at all: kept (an empty board is a valid sample;
  the configs keep empty images);
* class names are matched case-, space- and underscore-insensitively
  (``White_King`` -> ``white-king``); an unknown name is an error rather
  than a silently new class;
* file names are Roboflow hashes (``<hash>_jpg.rf.<hash>.jpg``): kept, so
  an output image can be traced to its source; the source split becomes a
  folder (``images/train/...``) and ``valid`` is called ``val``.

Images are decoded once and written downscaled to a short side of
:data:`DEFAULT_SHORT_SIDE` px (boxes scaled with them): decoding a 2048-px
JPEG in every training step is the slowest part of a CPU step here.

Class order (category ids 1..12, the configs' ``metainfo.classes``): the
order of the dataset's own README, white before black, each king, queen,
bishop, knight, rook, pawn -- not the export's alphabetical id order.
"""
import hashlib
import json
import os
import os.path as osp
from collections import Counter
from typing import Callable, Dict, List, Optional, Tuple

from PIL import Image

from gslora_det.io_utils import atomic_path, atomic_write_text

PIECES = ('king', 'queen', 'bishop', 'knight', 'rook', 'pawn')
CHESS_CLASSES = tuple(f'{colour}-{piece}' for colour in ('white', 'black')
                      for piece in PIECES)
#: Output split -> the export's folder.
SPLITS = {'train': 'train', 'val': 'valid', 'test': 'test'}
SOURCE_ANN = '_annotations.coco.json'
#: Short side of the written images. Pieces are ~117 x 170 px (smallest
#: 71 x 114) at the originals' 1371-px short side; at 320 px (scale 0.233,
#: 478 x 320 images) they are ~27 x 40 px (smallest ~17 x 27), which the
#: stride-8 level of the backbone still resolves, while a 1-thread CPU step
#: stays affordable (cost grows with the pixel count: 384 px would cost
#: ~1.45x more for pieces of ~33 x 48).
DEFAULT_SHORT_SIDE = 320
JPEG_QUALITY = 95
#: Bumped when the output of a given source and short side changes, so that
#: an old conversion is redone rather than skipped.
CONVERTER_VERSION = 1
MANIFEST = 'conversion.json'
MIN_BOX_PX = 1.0
DATA_HINT = ('Get the Roboflow "Chess Pieces v23" COCO export (public '
             'domain; github.com/jsansao/ChessPiecesv23, or '
             'public.roboflow.ai/object-detection/chess-full as "COCO '
             'JSON") and pass the folder holding train/ valid/ test/ with '
             '--src (default ../shared/data/chess).')


def canonical_class(name: str) -> str:
    """The normalised spelling of a category name (``White_King`` ->
    ``white-king``); not necessarily one of :data:`CHESS_CLASSES`."""
    return '-'.join((name or '').strip().lower().replace('_', ' ')
                    .replace('-', ' ').split())


def find_source(src: str) -> Dict[str, str]:
    """Output split -> source annotation file; FileNotFoundError naming
    where to get the data if any is missing."""
    files = {split: osp.join(src, folder, SOURCE_ANN)
             for split, folder in SPLITS.items()}
    missing = [f for f in files.values() if not osp.isfile(f)]
    if missing:
        what = (f'no chess data at {src!r}' if not osp.isdir(src) else
                f'incomplete chess data at {src!r} (missing '
                f'{", ".join(osp.relpath(m, src) for m in missing)})')
        raise FileNotFoundError(
            f'{what}: expected {{train,valid,test}}/{SOURCE_ANN} with the '
            f'JPEGs beside each. {DATA_HINT}')
    return files


def scaled_size(width: int, height: int, short_side: int) -> Tuple[int, int]:
    """``(w, h)`` with the short side ``short_side``, aspect kept."""
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _clip_box(box: List[float], width: float, height: float,
              fixes: Counter, stage: str) -> Optional[List[float]]:
    """Clip ``[x1, y1, x2, y2]`` to the image; None if under 1 px."""
    clipped = [min(max(box[0], 0.0), width), min(max(box[1], 0.0), height),
               min(max(box[2], 0.0), width), min(max(box[3], 0.0), height)]
    if clipped[2] - clipped[0] < MIN_BOX_PX or \
            clipped[3] - clipped[1] < MIN_BOX_PX:
        fixes[f'degenerate box dropped{stage}'] += 1
        return None
    if any(abs(a - b) > 1e-6 for a, b in zip(clipped, box)):  # not float
        fixes[f'box clipped to the image{stage}'] += 1     # rounding
    return clipped


def _category_map(coco: Dict, path: str, fixes: Counter) -> Dict[int, int]:
    """Source category id -> output id (1..12), or 0 for a dropped one."""
    supers = {c.get('supercategory') for c in coco['categories']}
    mapping = {}
    for cat in coco['categories']:
        name = canonical_class(cat['name'])
        if name in CHESS_CLASSES:
            mapping[cat['id']] = CHESS_CLASSES.index(name) + 1
        elif cat['name'] in supers:
            # 'pieces', every category's supercategory; boxes, if any,
            # are dropped and counted
            fixes[f'supercategory {cat["name"]!r} dropped'] += 1
            mapping[cat['id']] = 0
        elif name in PIECES:
            # a piece of no colour ('bishop'): its boxes are dropped
            fixes[f'category {cat["name"]!r} (no colour) dropped'] += 1
            mapping[cat['id']] = 0
        else:
            raise ValueError(
                f'{path}: unknown category {cat["name"]!r} (id '
                f'{cat["id"]}); the chess set has {list(CHESS_CLASSES)}. '
                'Extend canonical_class in gslora_det/data/chess.py if it '
                'is one of them spelled otherwise.')
    return mapping


def _write_image(src_path: str, dst_path: str, size: Tuple[int, int]) -> None:
    with Image.open(src_path) as im:
        # JPEG DCT scaling: decode at 1/2, 1/4 ... of the size (never below
        # `size`), then a proper resampling filter for the rest.
        im.draft('RGB', size)
        im = im.convert('RGB').resize(size, Image.LANCZOS)
    with atomic_path(dst_path) as tmp:
        im.save(tmp, format='JPEG', quality=JPEG_QUALITY)


def _load_source(ann_path: str) -> Dict:
    with open(ann_path) as f:
        coco = json.load(f)
    _category_map(coco, ann_path, Counter())  # unknown classes fail early
    return coco


def _convert_split(split: str, ann_path: str, coco: Dict, out: str,
                   short_side: int,
                   progress: Optional[Callable[[str, int, int], None]]
                   ) -> Dict:
    src_dir = osp.dirname(ann_path)
    # always reported, also when nothing needed fixing
    fixes = Counter({'degenerate box dropped': 0,
                     'box clipped to the image': 0})
    cat_map = _category_map(coco, ann_path, fixes)
    names = {c['id']: c['name'] for c in coco['categories']}
    by_image: Dict[int, List[Dict]] = {}
    for ann in coco['annotations']:
        by_image.setdefault(ann['image_id'], []).append(ann)
    img_dir = osp.join(out, 'images', split)
    os.makedirs(img_dir, exist_ok=True)
    images, anns = [], []
    src_images = sorted(coco['images'], key=lambda i: i['id'])
    for i, img in enumerate(src_images, start=1):
        src_file = osp.join(src_dir, img['file_name'])
        with Image.open(src_file) as im:  # the JPEG's real size wins
            width, height = im.size
        if (width, height) != (img.get('width'), img.get('height')):
            fixes['image size taken from the JPEG'] += 1
        new_w, new_h = scaled_size(width, height, short_side)
        sx, sy = new_w / width, new_h / height
        file_name = f'{split}/{osp.basename(img["file_name"])}'
        _write_image(src_file, osp.join(out, 'images', file_name),
                     (new_w, new_h))
        images.append(dict(id=i, file_name=file_name, width=new_w,
                           height=new_h, source_id=img['id']))
        for ann in sorted(by_image.get(img['id'], []), key=lambda a: a['id']):
            cat = cat_map.get(ann['category_id'])
            if cat is None:
                raise ValueError(
                    f'{ann_path}: annotation {ann["id"]} has category id '
                    f'{ann["category_id"]}, which is not in "categories"')
            if cat == 0:
                fixes[f'{names[ann["category_id"]]!r} box dropped (not '
                      'one of the 12 classes)'] += 1
                continue
            x, y, w, h = (float(v) for v in ann['bbox'])
            box = _clip_box([x, y, x + w, y + h], width, height, fixes, '')
            if box is None:
                continue
            box = _clip_box([box[0] * sx, box[1] * sy, box[2] * sx,
                             box[3] * sy], new_w, new_h, fixes,
                            ' after downscaling')
            if box is None:
                continue
            x1, y1, x2, y2 = (round(v, 2) for v in box)
            anns.append(dict(id=len(anns) + 1, image_id=i, category_id=cat,
                             bbox=[x1, y1, round(x2 - x1, 2),
                                   round(y2 - y1, 2)],
                             area=round((x2 - x1) * (y2 - y1), 2),
                             iscrowd=0))
        if progress is not None:
            progress(split, i, len(src_images))
    empty = len(images) - len({a['image_id'] for a in anns})
    if empty:
        fixes['image without boxes kept'] += empty
    # drop images of an earlier conversion that this one does not have
    keep = {osp.basename(img['file_name']) for img in images}
    for name in os.listdir(img_dir):
        if name not in keep:
            os.remove(osp.join(img_dir, name))
    categories = [dict(id=k + 1, name=n, supercategory='piece')
                  for k, n in enumerate(CHESS_CLASSES)]
    atomic_write_text(
        osp.join(out, 'annotations', f'instances_{split}.json'),
        json.dumps(dict(
            info=dict(description=f'chess pieces ({split}), short side '
                      f'{short_side} px, converted by gslora_det',
                      source=coco.get('info', {}).get('url', '')),
            licenses=coco.get('licenses', []), images=images,
            annotations=anns, categories=categories)))
    per_class = Counter(CHESS_CLASSES[a['category_id'] - 1] for a in anns)
    return dict(images=len(images), annotations=len(anns),
                per_class={n: per_class[n] for n in CHESS_CLASSES},
                fixes={k: v for k, v in fixes.items()
                       if v or k in ('degenerate box dropped',
                                     'box clipped to the image')})


def _fingerprint(files: Dict[str, str], short_side: int) -> Dict:
    digests = {}
    for split, path in files.items():
        with open(path, 'rb') as f:
            digests[split] = hashlib.sha1(f.read()).hexdigest()
    return dict(version=CONVERTER_VERSION, short_side=short_side,
                source_annotations=digests)


def read_manifest(out: str) -> Optional[Dict]:
    """The finished conversion's manifest in ``out``, or None."""
    path = osp.join(out, MANIFEST)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def chess_converted(out: str, short_side: Optional[int] = None) -> bool:
    """Whether ``out`` holds a finished conversion (of ``short_side``, if
    given)."""
    manifest = read_manifest(out)
    if manifest is None or (short_side is not None and
                            manifest.get('short_side') != short_side):
        return False
    return all(osp.isfile(osp.join(out, 'annotations',
                                   f'instances_{s}.json')) for s in SPLITS)


def convert_chess(src: str, out: str,
                  short_side: int = DEFAULT_SHORT_SIDE,
                  progress: Optional[Callable[[str, int, int], None]] = None
                  ) -> Dict[str, Dict]:
    """Write ``out/annotations/instances_{train,val,test}.json`` and
    ``out/images/{train,val,test}/*.jpg`` downscaled to ``short_side``.

    Idempotent: when ``out`` already holds a finished conversion of the
    same source files, short side and converter version, nothing is
    written and its stored summary is returned (with ``skipped=True``).
    Otherwise every file is written atomically (temporary file + rename)
    and the manifest ``out/conversion.json``, removed first, is written
    last: an interrupted rewrite is never taken for a finished one and is
    redone by the next call.

    Args:
        src: The export's folder (holding ``train/``, ``valid/``, ``test/``).
        out: Output folder, e.g. ``data/chess``.
        short_side: Short side of the written images, in px.
        progress: Called as ``progress(split, i, n)`` after each image.

    Returns:
        dict: split -> {'images', 'annotations', 'per_class', 'fixes',
        'skipped'}.
    """
    if short_side < 32:
        raise ValueError(f'short side {short_side} px is too small (>= 32)')
    files = find_source(src)
    wanted = _fingerprint(files, short_side)
    manifest = read_manifest(out)
    if manifest is not None and chess_converted(out) and all(
            manifest.get(k) == v for k, v in wanted.items()):
        return {split: dict(s, skipped=True)
                for split, s in manifest['stats'].items()}
    sources = {split: _load_source(path) for split, path in files.items()}
    if osp.exists(osp.join(out, MANIFEST)):
        os.remove(osp.join(out, MANIFEST))
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    stats = {split: _convert_split(split, files[split], sources[split], out,
                                   short_side, progress)
             for split in files}
    atomic_write_text(osp.join(out, MANIFEST),
                      json.dumps(dict(wanted, stats=stats), indent=1))
    return {split: dict(s, skipped=False) for split, s in stats.items()}
