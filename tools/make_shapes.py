"""Generate the built-in synthetic shapes detection set (COCO format).

Usage::

    python tools/make_shapes.py                      # data/shapes, 2000/200
    python tools/make_shapes.py --out data/tiny --num-train 64 --num-val 16
"""
import argparse
import time

from gslora_det.data.shapes import generate_shapes_dataset


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/shapes', help='output folder')
    parser.add_argument('--num-train', type=int, default=2000)
    parser.add_argument('--num-val', type=int, default=200)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    start = time.time()
    files = generate_shapes_dataset(args.out, args.num_train, args.num_val,
                                    args.seed)
    print(f'wrote {files} in {time.time() - start:.1f}s')


if __name__ == '__main__':
    main()
