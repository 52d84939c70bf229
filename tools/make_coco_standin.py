"""Write a COCO-shaped stand-in (and optionally a stand-in zoo checkpoint).

COCO's 80 categories, ids and file layout with tiny synthetic images, so
that the COCO configs and the 7 x 10 protocol run without COCO itself.

Usage::

    # data/coco: 240 train / 60 val images of 64 px
    python tools/make_coco_standin.py --out data/coco
    # smaller, plus a random-weight stand-in of the R50 zoo checkpoint
    python tools/make_coco_standin.py --out data/coco --num-train 120 \
        --num-val 40 --zoo-checkpoint checkpoints/
    # annotations only, full COCO train size (to time pre-flight checks)
    python tools/make_coco_standin.py --out data/coco_big --no-images \
        --num-train 118287 --num-val 5000
"""
import argparse
import time

from gslora_det.data.coco_standin import (make_coco_standin,
                                          make_zoo_checkpoint)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/coco', help='output folder')
    parser.add_argument('--num-train', type=int, default=240)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--image-size', type=int, default=64)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-images', action='store_true',
                        help='write the annotation files only')
    parser.add_argument('--zoo-checkpoint', metavar='DIR',
                        help='also publish a random-weight stand-in of the '
                        'R50 Deformable DETR zoo checkpoint into DIR')
    args = parser.parse_args()
    start = time.time()
    out = make_coco_standin(args.out, args.num_train, args.num_val,
                            args.image_size, args.seed,
                            write_images=not args.no_images)
    print(f"wrote {out['num_train']} train / {out['num_val']} val images "
          f"({out['num_train_ann']} / {out['num_val_ann']} objects) to "
          f"{args.out} in {time.time() - start:.1f}s")
    if args.zoo_checkpoint:
        path = make_zoo_checkpoint(args.zoo_checkpoint, seed=args.seed)
        print(f'published stand-in zoo checkpoint: {path}')


if __name__ == '__main__':
    main()
