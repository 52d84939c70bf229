"""Convert BCCD (VOC XML) to COCO JSON for the BCCD configs.

Usage::

    python tools/convert_bccd.py [--src ../shared/data/bccd] [--out data/bccd]

Writes ``<out>/annotations/instances_{train,val}.json`` (train = the
dataset's ``trainval`` list, 292 images; val = ``test``, 72 images) and a
relative symlink ``<out>/images`` to the JPEGs (nothing is copied). The
quirks fixed (duplicate and zero-area boxes, clipping, class spellings) are
listed in ``gslora_det/data/bccd.py`` and counted in the output. The result
is then checked with ``gslora_det.data.validate.validate_coco``.
"""
import argparse
import os.path as osp
import sys

from gslora_det.data.bccd import convert_bccd
from gslora_det.data.validate import InvalidAnnotations, validate_coco


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--src', default='../shared/data/bccd',
                        help='BCCD folder (holding BCCD/Annotations)')
    parser.add_argument('--out', default='data/bccd')
    args = parser.parse_args()
    try:
        stats = convert_bccd(args.src, args.out)
        for split in stats:
            validate_coco(
                osp.join(args.out, 'annotations', f'instances_{split}.json'),
                osp.join(args.out, 'images'))
    except (FileNotFoundError, ValueError, InvalidAnnotations) as err:
        sys.exit(f'error: {err}')
    for split, s in stats.items():
        fixes = ', '.join(f'{v} {k}' for k, v in s['fixes'].items()) or \
            'none'
        print(f'{split}: {s["images"]} images, {s["annotations"]} boxes '
              f'{s["per_class"]}; fixes: {fixes}')
    print(f'written to {args.out}/annotations/')


if __name__ == '__main__':
    main()
