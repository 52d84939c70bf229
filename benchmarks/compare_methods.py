"""GS-LoRA against its baselines on the built-in sequence, in one run.

Every method forgets the same tasks from the same base checkpoint with the
same data, batches and schedule (``tools/forget_sequence.py`` with
``model.method=<method>``): by default the task configs' own, i.e. the one
forgetting default's controller, which stops each task once its target
holds (``--iters N`` caps every task at N steps instead). Each seed
(``randomness.seed``; LoRA init, data order) is a separate run of every
method in ``<work-dir>/seed_<s>/<method>``; a retrain-from-scratch oracle
trains once on the retained data of each task. Then the methods' training
iterations and their merged models' inference (first seed) are timed side
by side in this process (:mod:`gslora_det.benchmark.costs`), and one table
is written: per method the first seed's numbers, the mean ± std (min–max)
of its mean H-Mean over the seeds, the LoRA groups left on and the
non-zero parameters of each task's adapter.

Usage::

    python benchmarks/compare_methods.py \\
        [--base-checkpoint work_dirs/demo/base.pth] \\
        [--work-dir work_dirs/benchmark] [--tasks 2] [--iters N] \\
        [--seeds 0 1 2] [--methods gslora lora ...] [--oracle-epochs 2] \\
        [--no-oracle]

Writes ``<work-dir>/methods.{md,json,png}``. Finished runs are reused, so
an interrupted benchmark continues where it stopped.
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
from gslora_det.pretrain import (  # noqa: E402  (after the path setup)
    SHAPES_PRETRAIN_CONFIG as PRETRAIN_CONFIG,
    SHAPES_TASK_CONFIGS as TASK_CONFIGS, pretrain_once)
#: Costs are reported as ratios to this method's.
REFERENCE = 'full_ft_gslora_loss'


def parse_args():
    from gslora_det.cli_options import add_cfg_options
    from gslora_det.baselines.methods import METHOD_PRESETS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--base-checkpoint', default='work_dirs/demo/base.pth',
                   help='pretrained model (made by tools/demo.py if absent)')
    p.add_argument('--work-dir', default='work_dirs/benchmark')
    p.add_argument('--methods', nargs='+', default=list(METHOD_PRESETS),
                   choices=list(METHOD_PRESETS))
    p.add_argument('--tasks', type=int, default=2, choices=(1, 2, 3),
                   help='first N tasks of the built-in sequence')
    p.add_argument('--iters', type=int, default=None,
                   help='step limit per task (default: the task configs\' '
                   'own, with the controller\'s early stop)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                   help='randomness.seed of each run of every method; the '
                   'costs and the first columns use the first')
    p.add_argument('--oracle-epochs', type=int, default=2,
                   help='epochs of the retrain oracle (base model: 5)')
    p.add_argument('--no-oracle', action='store_true')
    p.add_argument('--timing-rounds', type=int, default=3)
    p.add_argument('--oracle-only', action='store_true',
                   help='only run the retrain oracle (a second process)')
    p.add_argument('--runs-only', action='store_true',
                   help='only run the methods (e.g. a second process '
                   'sharing the work), no oracle, costs or table')
    add_cfg_options(p)
    add_cfg_options(p, '--oracle-cfg-options',
                    'key=value overrides for the oracle training')
    return p.parse_args()


def task_options(iters) -> list:
    """Step-limit overrides; none (the configs' own schedule) for None."""
    if iters is None:
        return []
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={max(iters // 2, 1)}']


def run_dir(args, method, seed):
    return osp.join(args.work_dir, f'seed_{seed}', method)


def run_method(method, args, base, seed):
    """The method's sequence (resumed if partly done) and its wall time.

    A task that reaches its step limit unmet does not stop the sequence:
    a method that cannot forget is a result (its mAPs show it)."""
    from gslora_det.sequence import SequenceError, run_sequence
    from gslora_det.io_utils import atomic_write_text
    folder = run_dir(args, method, seed)
    wall_file = osp.join(folder, 'wall_time.json')
    # Started by an invocation that was stopped before it finished: its
    # wall time is unknown (None, "–" in the table), not this part's.
    interrupted = (osp.isfile(osp.join(folder, 'sequence.json'))
                   and not osp.isfile(wall_file))
    start = time.time()
    try:
        reports = run_sequence(
            TASK_CONFIGS[:args.tasks], base, folder,
            cfg_options=([f'model.method={method}',
                          f'randomness.seed={seed}']
                         + task_options(args.iters) + args.cfg_options),
            summary_title=f'benchmark: {method}, seed {seed}',
            continue_on_unmet=True)
    except SequenceError as err:  # e.g. gradient ascent diverging
        print(f'[benchmark] {method} (seed {seed}) failed: {err}',
              flush=True)
        return None, None, str(err)
    wall = None if interrupted else time.time() - start
    if osp.isfile(wall_file):  # finished earlier: keep the first timing
        extra = time.time() - start
        with open(wall_file) as f:
            wall = json.load(f)['wall_s']
        if wall is not None and extra > 60:
            wall += extra
    atomic_write_text(wall_file, json.dumps(dict(wall_s=wall)))
    return reports, wall, None


def run_oracle(args, base, base_ap):
    """Retrain from scratch on each task's retained data; evaluate."""
    from gslora_det.evaluation.evaluate import strip_prefix
    from gslora_det.evaluation.hmean import h_mean
    from gslora_det.io_utils import atomic_write_text
    from mmengine.config import Config
    from gslora_det.console import LoopProgress
    reports, wall = [], 0.0
    progress = LoopProgress(args.tasks, 'retrain oracle task', '[benchmark]')
    for k, task_cfg in enumerate(TASK_CONFIGS[:args.tasks], start=1):
        task = Config.fromfile(task_cfg).forget_task
        folder = osp.join(args.work_dir, 'retrain', f'task_{k}')
        report_file = osp.join(folder, 'forget_report.json')
        _wait_for_other_process(folder, report_file)
        if osp.isfile(report_file):
            with open(report_file) as f:
                reports.append(json.load(f))
            wall += reports[-1]['wall_s']
            progress.skip(k)
            continue
        progress.start(k, f'{args.oracle_epochs} epochs, retained data')
        os.makedirs(folder, exist_ok=True)
        atomic_write_text(osp.join(folder, 'running.pid'), str(os.getpid()))
        start = time.time()
        cfg_file = osp.join(folder, 'retrain_config.py')
        forgotten = list(task.previously_forgotten) + list(
            task.forget_classes)
        epochs = args.oracle_epochs
        atomic_write_text(cfg_file, RETRAIN_TEMPLATE.format(
            base=PRETRAIN_CONFIG, epochs=epochs, milestone=max(epochs - 1, 1),
            forget=list(task.forget_classes),
            old=list(task.previously_forgotten)))
        resume = ['--resume'] if osp.isfile(
            osp.join(folder, 'last_checkpoint')) else []
        tool = osp.join(REPO, 'tools')
        options = (['--cfg-options', *args.oracle_cfg_options]
                   if args.oracle_cfg_options else [])
        subprocess.run([sys.executable, osp.join(tool, 'train.py'), cfg_file,
                        '--work-dir', folder, '--quiet-config', *resume,
                        *options], check=True)
        ckpt = osp.join(folder, f'epoch_{epochs}.pth')
        metrics_file = osp.join(folder, 'metrics.json')
        subprocess.run([sys.executable, osp.join(tool, 'test.py'),
                        PRETRAIN_CONFIG, ckpt, '--work-dir', folder,
                        '--metrics-out', metrics_file, '--forget-classes',
                        *task.forget_classes, '--previously-forgotten',
                        *task.previously_forgotten], check=True)
        with open(metrics_file) as f:
            after = strip_prefix(json.load(f))
        f_before = sum(base_ap[c] for c in task.forget_classes) / len(
            task.forget_classes)
        report = dict(
            task=k, method='retrain', checkpoint=ckpt,
            forgotten=forgotten, mAP_forget_before=f_before,
            mAP_forget_after=after['mAP_forget'],
            mAP_retain_after=after['mAP_retain'],
            mAP_old_after=after.get('mAP_old'),
            h_mean=h_mean(f_before, after['mAP_forget'],
                          after['mAP_retain']),
            residual_after={k2: v for k2, v in after.items()
                            if k2.startswith('residual')},
            wall_s=time.time() - start)
        atomic_write_text(report_file, json.dumps(report, indent=2))
        os.remove(osp.join(folder, 'running.pid'))
        reports.append(report)
        wall += report['wall_s']
        progress.end(k)
    return reports, wall


def _wait_for_other_process(folder: str, report_file: str) -> None:
    """Another benchmark process (``--oracle-only``) may be training this
    oracle task: wait for its report rather than train it twice."""
    pid_file = osp.join(folder, 'running.pid')
    while osp.isfile(pid_file) and not osp.isfile(report_file):
        with open(pid_file) as f:
            pid = int(f.read().strip() or 0)
        if pid == os.getpid():
            return
        try:
            os.kill(pid, 0)
        except OSError:  # that process is gone: take the task over
            return
        time.sleep(10)


RETRAIN_TEMPLATE = '''# Written by benchmarks/compare_methods.py: the retrain oracle.
_base_ = [{base!r}]
custom_imports = dict(imports=['gslora_det'], allow_failed_imports=False)
max_epochs = {epochs}
train_cfg = dict(max_epochs={epochs}, val_interval={epochs})
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=100),
    dict(type='MultiStepLR', begin=0, end={epochs}, by_epoch=True,
         milestones=[{milestone}], gamma=0.1)
]
# Every image with a retained object; forgotten objects are background.
train_dataloader = dict(dataset=dict(
    type='ForgetRetainCocoDataset', role='retain', forget_classes={forget},
    previously_forgotten={old}, sample_ratio=1.0, sample_seed=0))
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1))
'''


def measure_costs(args, base, methods, final_ckpts):
    """Side-by-side training and inference costs (see the module doc)."""
    import torch
    from mmengine.config import Config
    from gslora_det.cli_options import parse_cfg_options
    from gslora_det.benchmark import costs
    from gslora_det.hooks.baseline_state_hook import first_train_batches
    options = {'load_from': base, **parse_cfg_options(args.cfg_options)}
    cfg = costs.load_train_config(TASK_CONFIGS[0], options)
    batches = first_train_batches(cfg, 3)
    models = {}
    for method in methods:
        torch.manual_seed(0)
        model = costs.build_model({**cfg.model, 'method': method}, base)
        model.train()
        costs.prepare_method_state(model, batches)
        models[method] = model
    pre = Config.fromfile(PRETRAIN_CONFIG)
    if 'retrain' in final_ckpts:
        models['retrain'] = costs.build_model(pre.model, base).train()
    print(f'[benchmark] timing training iterations of {list(models)}...',
          flush=True)
    optim = cfg.optim_wrapper
    train = costs.measure_training(
        models, batches, lr=optim.optimizer.lr,
        max_norm=(optim.get('clip_grad') or {}).get('max_norm', 0),
        rounds=args.timing_rounds)
    del models
    val_cfg = dict(pre.val_dataloader, num_workers=0,
                   persistent_workers=False, batch_size=8)
    from mmengine.runner import Runner
    val = [b for _, b in zip(range(8), Runner.build_dataloader(val_cfg))]
    print('[benchmark] timing inference of the merged models...',
          flush=True)
    infer = costs.measure_inference(
        pre.model, {'base': base, **final_ckpts}, val, rounds=5)
    return train, infer


def main():
    args = parse_args()
    from gslora_det.benchmark.groups import task_adapter_nonzero
    from gslora_det.benchmark.table import (method_row, with_seeds,
                                            write_results)
    from gslora_det.benchmark.data import ensure_data
    start = time.time()
    ensure_data('shapes')
    base = args.base_checkpoint
    pretrain_s = 0.0
    if not osp.isfile(base):
        base = pretrain_once(PRETRAIN_CONFIG, osp.dirname(base) or '.',
                             tag='benchmark')
        pretrain_s = time.time() - start
    runs, errors = {}, {}
    first = args.seeds[0]
    if args.oracle_only:
        with open(osp.join(run_dir(args, 'gslora', first), 'task_1',
                           'forget_report.json')) as f:
            run_oracle(args, base, json.load(f)['per_class_AP_before'])
        return
    from gslora_det.console import LoopProgress
    from gslora_det.sequence import task_dir, task_done
    plan = [(seed, m) for seed in args.seeds for m in args.methods]
    progress = LoopProgress(len(plan), 'run', '[benchmark]')
    seed_runs = {}  # method -> {seed: (reports, wall)}
    for i, (seed, method) in enumerate(plan, start=1):
        done = all(task_done(task_dir(run_dir(args, method, seed), k))
                   for k in range(1, args.tasks + 1))
        if done:  # only reads its reports: no wall time for the ETA
            progress.skip(i)
        else:
            progress.start(i, f'{method}, seed {seed}')
        reports, wall, error = run_method(method, args, base, seed)
        if error:
            errors.setdefault(method, {})[seed] = error
        else:
            seed_runs.setdefault(method, {})[seed] = (reports, wall)
        if not done:
            progress.end(i)
    if args.runs_only:
        return
    # The first seed's run is the method's row (and its costs).
    for method in args.methods:
        if first in seed_runs.get(method, {}):
            runs[method] = seed_runs[method][first]
    if not runs:
        sys.exit(f'error: no method finished with seed {first}: {errors}')
    base_ap = runs[next(iter(runs))][0][0]['per_class_AP_before']
    if not args.no_oracle:
        runs['retrain'] = run_oracle(args, base, base_ap)
    finals = {m: osp.join(run_dir(args, m, first), f'task_{args.tasks}',
                          'merged.pth') for m in runs if m != 'retrain'}
    if 'retrain' in runs:
        finals['retrain'] = runs['retrain'][0][-1]['checkpoint']
    cost_start = time.time()
    train, infer = measure_costs(args, base,
                                 [m for m in runs if m != 'retrain'], finals)
    # The benchmark's total: every run's own wall time (a run finished by
    # an earlier or a parallel invocation counts with its recorded time),
    # plus pretraining done here and the cost measurement.
    total_s = (pretrain_s + sum(wall or 0.0 for seeds in seed_runs.values()
                                for _, wall in seeds.values())
               + (runs['retrain'][1] if 'retrain' in runs else 0.0)
               + time.time() - cost_start)
    rows = []
    for m, (reports, wall) in runs.items():
        row = method_row(m, reports, train.get(m), train.get(REFERENCE),
                         infer.get(m), infer['base'], wall)
        if m != 'retrain':
            folder = run_dir(args, m, first)
            row['adapter_nonzero_per_task'] = [
                task_adapter_nonzero(task_dir(folder, k))
                for k in range(1, len(reports) + 1)]
            with_seeds(row, {s: method_row(m, r)['h_mean_avg']
                             for s, (r, _) in seed_runs[m].items()},
                       errors.get(m))
        rows.append(row)
    rows += [dict(method=m, label=m, error=e[first], h_mean_per_task=[],
                  h_mean_avg=None) for m, e in errors.items()
             if first in e]
    import torch
    settings = dict(
        tasks=args.tasks,
        iters_per_task=args.iters or "the task configs' own (controller)",
        seeds=args.seeds,
        oracle_epochs=None if args.no_oracle else args.oracle_epochs,
        base_checkpoint=base, reference_for_ratios=REFERENCE,
        machine=f'{platform.machine()}, {os.cpu_count()} CPU cores'
        + (f', {torch.cuda.get_device_name()}' if torch.cuda.is_available()
           else ', no GPU'),
        torch=torch.__version__, total_wall_min=total_s / 60,
        this_invocation_min=(time.time() - start) / 60,
        command=' '.join(['python', 'benchmarks/compare_methods.py'] +
                         sys.argv[1:]))
    out = write_results([r for r in rows if 'error' not in r] +
                        [r for r in rows if 'error' in r],
                        osp.join(args.work_dir, 'methods'), settings)
    with open(out['md']) as f:
        print('\n' + f.read())
    print(f'[benchmark] {settings["total_wall_min"]:.1f} min; wrote '
          f'{", ".join(out.values())}')


if __name__ == '__main__':
    main()
