"""Calibrate the forgetting constants of the built-in sequence (task 1).

The reference's COCO constants were tuned for a 256-d R50 model trained on
COCO; the built-in 128-d detector needs its own. This sweep runs task 1 of
the built-in sequence for each setting from the same base checkpoint and
prints (and writes) one table row per setting.

Usage::

    python benchmarks/calibrate_shapes.py --base-checkpoint work_dirs/demo/base.pth \
        [--work-dir work_dirs/calibration] [--settings ref,chosen]

Writes ``<work-dir>/calibration.md`` and ``calibration.json``. Finished
settings are reused when the sweep is run again.
"""
import argparse
import json
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TASK1 = osp.join(REPO, 'configs', 'shapes',
                 'gslora_deformable-detr_r18-tiny_task1_shapes.py')

#: name -> (beta, BND, lr, iterations)
SETTINGS = {
    'chosen': (0.5, 5.0, 1e-3, 300),  # configs/_base_/gslora_forgetting_shapes.py
    'ref': (0.15, 15.0, 3e-4, 150),  # the reference's COCO constants
    'strong': (1.0, 15.0, 1e-3, 300),
    'long': (0.5, 5.0, 1e-3, 400),
}


def run_setting(name, base, work_dir):
    beta, bound, lr, iters = SETTINGS[name]
    folder = osp.join(work_dir, name)
    report = osp.join(folder, 'forget_report.json')
    if not osp.isfile(report):
        cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), TASK1,
               '--work-dir', folder, '--quiet-config',
               '--cfg-options', f'load_from={base}',
               f'model.forget_cfg.beta={beta}',
               f'model.forget_cfg.bound={bound}',
               f'optim_wrapper.optimizer.lr={lr}',
               f'train_cfg.max_iters={iters}',
               f'train_cfg.val_interval={iters}']
        if osp.isfile(osp.join(folder, 'last_checkpoint')):
            cmd.append('--resume')
        subprocess.run(cmd, check=True)
    with open(report) as f:
        r = json.load(f)
    return dict(setting=name, beta=beta, bound=bound, lr=lr, iters=iters,
                forget_before=r['mAP_forget_before'],
                forget_after=r['mAP_forget_after'],
                retain_before=r['mAP_retain_before'],
                retain_after=r['mAP_retain_after'], h_mean=r['h_mean'],
                residual_any_03=r['residual_after'].get('residual_any@0.3'),
                train_time_s=r['train_time_s'])


def to_markdown(rows):
    lines = ['| setting | β | BND | lr | steps | forget mAP before → after | '
             'retain mAP before → after | H-Mean | residual any@0.3 |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        res = r['residual_any_03']
        lines.append(
            f"| {r['setting']} | {r['beta']} | {r['bound']:g} | {r['lr']:g} "
            f"| {r['iters']} | {r['forget_before']:.3f} → "
            f"{r['forget_after']:.3f} | {r['retain_before']:.3f} → "
            f"{r['retain_after']:.3f} | {r['h_mean']:.3f} | "
            f"{'–' if res is None else f'{100 * res:.1f} %'} |")
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--base-checkpoint', required=True)
    parser.add_argument('--work-dir', default='work_dirs/calibration')
    parser.add_argument('--settings', default=','.join(SETTINGS))
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    from gslora_det.console import LoopProgress
    from gslora_det.io_utils import atomic_write_text
    names = args.settings.split(',')
    progress = LoopProgress(len(names), 'setting', '[calibrate]')
    rows = []
    for i, name in enumerate(names, start=1):
        done = osp.isfile(osp.join(args.work_dir, name, 'forget_report.json'))
        if done:  # only reads its report: no wall time for the ETA
            progress.skip(i)
        else:
            progress.start(i, '{} (β, BND, lr, steps = {})'.format(
                name, ', '.join(f'{v:g}' for v in SETTINGS[name])))
        rows.append(run_setting(name, args.base_checkpoint, args.work_dir))
        if not done:
            progress.end(i)
    table = to_markdown(rows)
    atomic_write_text(osp.join(args.work_dir, 'calibration.md'), table + '\n')
    atomic_write_text(osp.join(args.work_dir, 'calibration.json'),
                      json.dumps(rows, indent=2))
    print(table)


if __name__ == '__main__':
    main()
