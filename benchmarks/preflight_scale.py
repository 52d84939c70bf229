"""Pre-flight checks and split building at COCO scale, timed.

Usage::

    python benchmarks/preflight_scale.py [--work-dir work_dirs/preflight_scale]
        [--num-train 118287] [--num-val 5000]

Writes a stand-in ``data/coco`` whose train annotation file lists as many
images as COCO train2017 (118,287; no image files except the seeded sample
the image check opens), then runs, as a forgetting task does on rank 0:

1. the pre-flight checks of the COCO task-1 config (``prepare_config``:
   structure, ids, boxes of both files, class names against ``METAINFO``,
   a sample of the image files);
2. building the task's retain and forget splits (two ``CocoDataset`` s);

and prints a Markdown table of the time of each step and how many times
each annotation file was parsed (``gslora_det.data.coco_cache``).
"""
import argparse
import os
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/preflight_scale')
    parser.add_argument('--num-train', type=int, default=118287)
    parser.add_argument('--num-val', type=int, default=5000)
    return parser.parse_args()


def write_sampled_images(ann_file: str, img_dir: str) -> int:
    """Write the few images the pre-flight image check opens."""
    import random

    from PIL import Image

    from gslora_det.data import validate
    from gslora_det.data.coco_cache import load_json
    names = [i['file_name'] for i in load_json(ann_file)['images']]
    if len(names) > validate.MAX_IMAGES_CHECKED:
        names = random.Random(0).sample(names, validate.MAX_IMAGES_CHECKED)
    os.makedirs(img_dir, exist_ok=True)
    image = Image.new('RGB', (64, 64), (90, 120, 150))
    for name in names:
        image.save(osp.join(img_dir, name))
    return len(names)


def main():
    args = parse_args()
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import gslora_det  # noqa: F401
    from gslora_det.config_checks import prepare_config
    from gslora_det.data import coco_cache
    from gslora_det.data.coco_standin import make_coco_standin

    root = osp.abspath(args.work_dir)
    rows = []
    t0 = time.time()
    info = make_coco_standin(osp.join(root, 'data', 'coco'),
                             num_train=args.num_train,
                             num_val=args.num_val, write_images=False,
                             progress=False)
    rows.append(('write the stand-in JSON files', time.time() - t0))
    for split in ('train', 'val'):
        write_sampled_images(info[f'{split}_ann'], info[f'{split}_img_dir'])
    coco_cache.clear()
    coco_cache.parse_counts.clear()
    os.chdir(root)
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'coco', 'gslora_deformable-detr_r50_task1_coco.py'))
    cfg.load_from = None
    t0 = time.time()
    prepare_config(cfg, mode='train', log=print)
    rows.append(('pre-flight checks (rank 0)', time.time() - t0))

    init_default_scope('mmdet')
    from mmdet.registry import DATASETS
    t0 = time.time()
    sizes = [len(DATASETS.build(ds))
             for ds in cfg.train_dataloader.dataset.datasets]
    rows.append((f'retain + forget splits ({sizes[0]} + {sizes[1]} '
                 'images)', time.time() - t0))

    print(f'\nStand-in: {info["num_train"]:,} train images '
          f'({info["num_train_ann"]:,} boxes), {info["num_val"]:,} val '
          'images.\n')
    print('| step | seconds |\n|---|---|')
    for what, seconds in rows:
        print(f'| {what} | {seconds:.1f} |')
    print('\nTimes each annotation file was parsed in this process:')
    for path, count in coco_cache.parse_counts.items():
        print(f'- {osp.relpath(path, root)}: {count}')


if __name__ == '__main__':
    main()
