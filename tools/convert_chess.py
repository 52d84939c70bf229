"""Convert the chess-pieces export (Roboflow COCO) for the chess configs.

Usage::

    python tools/convert_chess.py [--src ../shared/data/chess]
        [--out data/chess] [--short-side 320]

Writes ``<out>/annotations/instances_{train,val,test}.json`` (the export's
train / valid / test splits: 202 / 58 / 29 images) and the photos,
downscaled once to ``--short-side`` px, under ``<out>/images/<split>/``,
boxes scaled with them; the 12 classes in the order of
``gslora_det.data.chess.CHESS_CLASSES``. The quirks fixed (the ``pieces``
supercategory, the stray colourless ``bishop`` box, ids from 0, degenerate
or outside boxes) are listed in ``gslora_det/data/chess.py`` and counted in
the output. Re-running with the same arguments does nothing; other
arguments rewrite the output (file by file, atomically). The result is
then checked with ``gslora_det.data.validate.validate_coco``.
"""
import argparse
import os.path as osp
import sys

from gslora_det.data.chess import (CHESS_CLASSES, DEFAULT_SHORT_SIDE,
                                   convert_chess)
from gslora_det.data.validate import InvalidAnnotations, validate_coco


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--src', default='../shared/data/chess',
                        help='the export (holding train/ valid/ test/)')
    parser.add_argument('--out', default='data/chess')
    parser.add_argument('--short-side', type=int, default=DEFAULT_SHORT_SIDE,
                        help='short side of the written images in px '
                        f'(default {DEFAULT_SHORT_SIDE}; the configs expect '
                        'it)')
    args = parser.parse_args()

    def progress(split, i, n):
        if i == 1 or i % 25 == 0 or i == n:
            print(f'[chess] {split}: {i}/{n} images', flush=True)

    try:
        stats = convert_chess(args.src, args.out, args.short_side, progress)
        for split in stats:
            validate_coco(
                osp.join(args.out, 'annotations', f'instances_{split}.json'),
                osp.join(args.out, 'images'))
    except (FileNotFoundError, ValueError, InvalidAnnotations) as err:
        sys.exit(f'error: {err}')
    if all(s['skipped'] for s in stats.values()):
        print(f'[chess] {args.out} is up to date (same source, short side '
              f'{args.short_side}): nothing written')
    for split, s in stats.items():
        fixes = '; '.join(f'{v} {k}' for k, v in s['fixes'].items()) or \
            'none'
        per_class = ', '.join(f'{n} {s["per_class"].get(n, 0)}'
                              for n in CHESS_CLASSES)
        print(f'{split}: {s["images"]} images, {s["annotations"]} boxes '
              f'({per_class}); fixes: {fixes}')
    print(f'classes (category ids 1-{len(CHESS_CLASSES)}): '
          f'{", ".join(CHESS_CLASSES)}')
    done = 'in' if all(s['skipped'] for s in stats.values()) else \
        'written to'
    print(f'{done} {args.out}/annotations/ and {args.out}/images/ '
          f'(short side {args.short_side} px)')


if __name__ == '__main__':
    main()
