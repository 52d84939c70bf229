"""The sparsity sweep and the seeds of the method comparison: their rows,
target and tables on hand-made reports, adapter parameter counts on a
hand-written safetensors file, the sweep's loop over a fake training
script, the 6 + 6-layer shapes model, and the CLIs' --help (the real
runs are benchmarks, not tests)."""
import argparse
import functools
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from conftest import CONFIGS, REPO, fake_sequence_inputs, load_script
from gslora_det.benchmark import sparsity
from gslora_det.benchmark.groups import (adapter_nonzero_params,
                                         exactly_zero_groups, format_spread,
                                         groups_on, spread,
                                         task_adapter_nonzero)
from gslora_det.benchmark.sparsity import (Setting,
                                           settings_grid, setting_summary,
                                           task_row)
from gslora_det.benchmark.table import markdown_table, method_row, with_seeds

GROUPS = [f'{p}.layers.{i}' for p in ('encoder', 'decoder') for i in range(3)]


def report(task=1, zero=(), h=0.8, forget=0.0, retain=0.85, own=0.0,
           any_=0.0, steps=50, listed=True):
    """A forget_report.json of a 6-group model; ``zero``: exact zeros.
    ``listed=False``: an older report (no groups_exactly_zero), where a
    zero group's norm is 0.0."""
    norms = {g: (0.0 if g in zero and not listed else 0.5 if g in zero
                 else 2.0 + i) for i, g in enumerate(GROUPS)}
    rep = dict(task=task, group_norms=norms, h_mean=h,
               mAP_forget_before=0.8, mAP_forget_after=forget,
               mAP_retain_before=0.86, mAP_retain_after=retain,
               mAP_old_after=0.0 if task > 1 else None,
               residual_after={'residual_own@0.3': own,
                               'residual_any@0.3': any_,
                               'residual_num_gt': 200},
               controller=dict(status='met', steps=steps), train_iters=steps)
    if listed:  # the writer's own rule: norms of zero groups keep ‖A‖
        rep['groups_exactly_zero'] = [g for g in GROUPS if g in zero]
    return rep


HALF = GROUPS[:3]  # the encoder's groups


# -------------------------------------------------------------- groups
def test_exactly_zero_prefers_the_writers_list_then_exact_zero_norms():
    new = report(zero=HALF)  # norms 0.5 > 0 (shrink='B' keeps ‖A‖)
    assert exactly_zero_groups(new) == HALF
    old = report(zero=HALF, listed=False)
    assert exactly_zero_groups(old) == HALF  # norms exactly 0.0
    tiny = report()
    tiny['group_norms']['encoder.layers.0'] = 1e-30  # small is not zero
    assert exactly_zero_groups(tiny) == []
    assert groups_on(new) == GROUPS[3:]
    assert exactly_zero_groups(dict(group_norms={})) == []


def test_task_row_counts_groups_and_reads_the_bar():
    row = task_row(report(task=2, zero=HALF + ['decoder.layers.1']))
    assert (row['groups_zero'], row['groups_total']) == (4, 6)
    assert row['on'] == ['decoder.layers.0', 'decoder.layers.2']
    assert row['bar_met'] and row['steps'] == 50
    missed = task_row(report(forget=0.05, any_=0.1))
    assert not missed['bar_met']
    assert [f.split()[0] for f in missed['bar_failed']] == ['forget_map',
                                                            'any']


def test_settings_grid_runs_lora_once_and_proximal_gets_its_wrapper():
    grid = settings_grid([0, 3e-4, 0.03], ['penalty', 'proximal'], [0, 50])
    assert grid[0] == Setting(0.0) and grid[0].is_reference
    assert len(grid) == 1 + 2 * 2 * 2
    assert len({s.slug for s in grid}) == len(grid)
    prox = Setting(0.03, 'proximal', 50)
    assert prox.slug == 'proximal_a0.03_w50'
    assert prox.cfg_options() == [
        'model.group_lasso_cfg.alpha=0.03',
        'model.group_lasso_cfg.mode=proximal',
        'model.group_lasso_cfg.warmup_iters=50']
    assert Setting(3e-4).label == 'penalty α = 0.0003'
    # A sparsify phase: its own folder, label and option.
    grid = settings_grid([0.03], ['proximal'], [100], [0, 100])
    assert [s.slug for s in grid] == ['proximal_a0.03_w100',
                                      'proximal_a0.03_w100_s100']
    assert grid[1].label == 'proximal α = 0.03, warm-up 100, sparsify ≥ 100'
    assert grid[1].cfg_options()[-1] == \
        'model.group_lasso_cfg.sparsify_iters=100'
    with pytest.raises(ValueError, match='sparsify'):
        settings_grid([0.03], ['proximal'], [0], [-1])
    with pytest.raises(ValueError, match='unknown mode'):
        settings_grid([0.1], ['lasso'])


def summary(zeros, hs, h_ref, bar_ok=True, expected=None):
    rows = [task_row(report(task=k + 1, zero=z, h=h,
                            forget=0.0 if bar_ok else 0.3))
            for k, (z, h) in enumerate(zip(zeros, hs))]
    return setting_summary('shapes', Setting(0.03, 'proximal'), rows, h_ref,
                           expected)


def test_target_needs_half_zero_every_task_h_within_a_point_and_the_bar():
    ok = summary([HALF, GROUPS[1:]], [0.80, 0.78], h_ref=0.80)
    assert ok['h_mean'] == pytest.approx(0.79)
    assert ok['h_delta'] == pytest.approx(-0.01)  # exactly 1 point: within
    assert ok['target'] and ok['complete']
    # better than plain LoRA is fine
    assert summary([HALF, HALF], [0.9, 0.9], h_ref=0.8)['target']
    low = summary([HALF, HALF], [0.80, 0.777], h_ref=0.80)  # 1.15 points
    assert not low['h_within'] and not low['target']
    one_task = summary([HALF, GROUPS[:2]], [0.8, 0.8], h_ref=0.8)
    assert not one_task['half_zero_every_task'] and not one_task['target']
    assert not summary([HALF], [0.8], 0.8, bar_ok=False)['bar_every_task']
    assert not summary([HALF], [0.8], h_ref=None)['target']  # no α = 0
    assert summary([HALF], [0.8], h_ref=None)['target'] is None  # unknown
    assert summary([GROUPS[:2]], [0.8], h_ref=None)['target'] is False
    short = summary([HALF], [0.8], 0.8, expected=3)
    assert not short['complete'] and not short['target']


def test_markdown_in_percent_with_groups_and_layers_on():
    results = [dict(model='shapes', setting=vars(s), rows=rows,
                    expected_tasks=1)
               for s, rows in ((Setting(0.0), [task_row(report())]),
                               (Setting(0.03, 'proximal'),
                                [task_row(report(zero=HALF, h=0.795))]))]
    from gslora_det.benchmark.sparsity_run import summarise
    md = sparsity.markdown(summarise(results))
    assert ('| shapes | proximal α = 0.03 | 1 | 3/6 | dec0, dec1, dec2 | '
            '0.0 / 85.0 / – | 0.0 / 0.0 | 79.5 | 50 | met |') in md
    assert '| shapes | LoRA (α = 0) | 1 | 0/6 | enc0, enc1, enc2, dec0' in md
    assert ('| shapes | proximal α = 0.03 | 79.5 | -0.5 | yes | yes | '
            '**yes** |') in md
    assert '| shapes | LoRA (α = 0) | 80.0 | +0.0 | no | yes | **no** |' \
        in md
    # Without an α = 0 run the H condition cannot be checked: say so.
    alone = sparsity.summary_table(summarise(results[1:]))
    assert '| – | yes | yes | **unknown: no α = 0 run on this model** |' \
        in alone
    missed = [dict(results[1], rows=[task_row(report(zero=GROUPS[:2]))])]
    assert '| – | no | yes | **no** |' in sparsity.summary_table(
        summarise(missed))


def test_heat_map_draws_exactly_zero_groups_as_hatched_zeros(monkeypatch):
    import gslora_det.report.plots as plots
    from gslora_det.report.plots import ZERO_GID
    figures = []
    monkeypatch.setattr(plots, '_save',
                        lambda fig, path: figures.append(fig) or path)
    results = [dict(model='shapes', summary=dict(label='prox'),
                    rows=[task_row(report(zero=HALF)),
                          task_row(report(task=2))]),
               dict(model='bccd', summary=dict(label='prox'), rows=[])]
    sparsity.plot(results, 'unused.png')
    assert len(figures[0].axes) == 2  # bccd, no finished run: no panel
    ax = figures[0].axes[0]  # (the other is its colour bar)
    image = ax.get_images()[0]
    assert image.get_array()[0].tolist()[:4] == [0.0, 0.0, 0.0, 5.0]
    assert image.get_clim()[0] == 0.0
    zeros = [p for p in ax.patches if p.get_gid() == ZERO_GID]
    assert len(zeros) == 3
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        'prox, task 1', 'prox, task 2']


# ----------------------------------------------- seeds and adapter counts
def test_spread_over_seeds():
    s = spread([0.70, 0.72, None, 0.74])
    assert s['n'] == 3 and s['mean'] == pytest.approx(0.72)
    assert s['std'] == pytest.approx(0.02)  # sample standard deviation
    assert (s['min'], s['max']) == (0.70, 0.74)
    assert format_spread(s) == '72.0 ± 2.0 (70.0–74.0), 3 seeds'
    assert format_spread(spread([0.5])) == '50.0, 1 seed'
    assert spread([None])['mean'] is None and format_spread(spread([])) == '–'


def test_methods_table_has_seeds_groups_and_adapter_columns():
    reports = [report(zero=HALF, h=0.8), report(task=2, h=0.6)]
    row = method_row('gslora', reports)
    assert row['groups_on_per_task'] == [[3, 6], [6, 6]]
    row['adapter_nonzero_per_task'] = [1234, None]
    with_seeds(row, {0: 0.7, 1: 0.72, 2: 0.74}, failed={3: 'nan'})
    assert row['h_mean_by_seed'] == {'0': 0.7, '1': 0.72, '2': 0.74}
    table = markdown_table([row])
    assert ('| 72.0 ± 2.0 (70.0–74.0), 3 seeds (failed: seed 3) | '
            '3/6 / 6/6 | 1,234 / – |') in table
    full_ft = method_row('full_ft_gslora_loss', [dict(report(),
                                                      group_norms={})])
    assert full_ft['groups_on_per_task'] == [None]
    assert '| – | – | – |' in markdown_table([full_ft])


def test_adapter_nonzero_counts_lora_elements_only(tmp_path):
    from safetensors.torch import save_file
    folder = tmp_path / 'task_1' / 'adapter'
    folder.mkdir(parents=True)
    a = torch.zeros(8, 16)
    a[0, :5] = 1.0
    b = torch.zeros(32, 8)
    b[3, 2], b[4, 4] = -2.0, 1e-30  # tiny is non-zero
    save_file({'encoder.layers.0.ffn.layers.1.lora_A': a,
               'encoder.layers.0.ffn.layers.1.lora_B': b,
               'decoder.layers.0.ffn.layers.1.lora_B': torch.zeros(32, 8),
               'something.else': torch.ones(10)},
              str(folder / 'adapter_model.safetensors'))
    assert adapter_nonzero_params(
        str(folder / 'adapter_model.safetensors')) == 7
    assert task_adapter_nonzero(str(tmp_path / 'task_1')) == 7
    assert task_adapter_nonzero(str(tmp_path / 'task_2')) is None


def test_compare_methods_runs_every_seed_and_reports_the_spread(
        tmp_path, monkeypatch, capsys):
    """compare_methods.main with its runs and cost timing faked: a run per
    seed and method in seed_<s>/<method>, the seed and no step limit in
    the options, a failed seed left out of the spread."""
    import importlib.util
    import gslora_det.data.shapes as shapes
    cm = load_script('benchmarks/compare_methods.py', 'compare_methods')
    monkeypatch.setattr(shapes, 'shapes_dataset_ready', lambda root: True)
    calls = []

    def fake_run(method, args, base, seed):
        calls.append((method, seed, cm.run_dir(args, method, seed),
                      cm.task_options(args.iters)))
        if (method, seed) == ('lora', 2):
            return None, None, 'diverged'
        h = 0.7 + 0.02 * seed
        return [dict(report(zero=HALF, h=h), per_class_AP_before={})], \
            60.0, None

    def fake_costs(args, base, methods, finals):
        cost = dict(sec_per_iter=0.5, memory=dict(
            train_tensor_bytes=2**20, trainable_params=100))
        inference = dict(sec_per_image=0.01, params=10)
        return ({m: cost for m in methods},
                dict({m: inference for m in methods}, base=inference))

    monkeypatch.setattr(cm, 'run_method', fake_run)
    monkeypatch.setattr(cm, 'measure_costs', fake_costs)
    base = tmp_path / 'base.pth'
    base.write_text('x')
    work = tmp_path / 'bench'
    monkeypatch.setattr(sys, 'argv', [
        'compare_methods.py', '--base-checkpoint', str(base), '--work-dir',
        str(work), '--methods', 'gslora', 'lora', '--tasks', '1',
        '--no-oracle'])
    cm.main()
    assert [(m, s) for m, s, _, _ in calls] == [
        ('gslora', 0), ('lora', 0), ('gslora', 1), ('lora', 1),
        ('gslora', 2), ('lora', 2)]
    assert calls[3][2] == osp.join(str(work), 'seed_1', 'lora')
    assert all(options == [] for *_, options in calls)  # configs' own
    assert cm.task_options(100)[0] == 'train_cfg.max_iters=100'
    with open(work / 'methods.json') as f:
        rows = {r['method']: r for r in json.load(f)['rows']}
    assert rows['gslora']['h_mean_over_seeds']['n'] == 3
    assert rows['gslora']['h_mean_over_seeds']['mean'] == pytest.approx(
        0.72)
    assert rows['lora']['failed_seeds'] == [2]
    assert rows['lora']['h_mean_over_seeds']['max'] == pytest.approx(0.72)
    md = (work / 'methods.md').read_text()
    assert '72.0 ± 2.0 (70.0–74.0), 3 seeds | 3/6 | – |' in md
    assert '71.0 ± 1.4 (70.0–72.0), 2 seeds (failed: seed 2)' in md
    assert '- seeds: [0, 1, 2]' in md


def test_compare_methods_wall_time_of_an_interrupted_run_is_unknown(
        tmp_path, monkeypatch):
    """A run finished by a later invocation reports no wall time (only
    that invocation's part is known), a run done in one invocation its
    own, and a finished run keeps the time it recorded."""
    import gslora_det.sequence as sequence
    cm = load_script('benchmarks/compare_methods.py', 'compare_methods')

    def fake_sequence(configs, base, folder, **kwargs):
        os.makedirs(folder, exist_ok=True)
        return [dict(task=1)]
    monkeypatch.setattr(sequence, 'run_sequence', fake_sequence)
    args = argparse.Namespace(work_dir=str(tmp_path), tasks=1, iters=None,
                              cfg_options=[])
    resumed = tmp_path / 'seed_0' / 'gslora'
    resumed.mkdir(parents=True)
    (resumed / 'sequence.json').write_text('{}')  # started, stopped
    assert cm.run_method('gslora', args, 'base.pth', 0)[1] is None
    assert cm.run_method('gslora', args, 'base.pth', 0)[1] is None  # kept
    reports, wall, error = cm.run_method('lora', args, 'base.pth', 0)
    assert error is None and wall is not None and wall >= 0
    (tmp_path / 'seed_0' / 'lora' / 'wall_time.json').write_text(
        json.dumps(dict(wall_s=90.0)))
    assert cm.run_method('lora', args, 'base.pth', 0)[1] == 90.0


# ------------------------------------------------------- the sweep's loop
FAKE_TRAIN = '''import json, os, sys
argv = sys.argv
work = argv[argv.index('--work-dir') + 1]
opts = dict(a.split('=', 1) for a in argv if '=' in a)
alpha = float(opts['model.group_lasso_cfg.alpha'])
task = int(os.path.basename(work).split('_')[1])
groups = [f'{p}.layers.{i}' for p in ('encoder', 'decoder') for i in range(3)]
zero = groups[:4] if alpha > 0 else []
os.makedirs(work, exist_ok=True)
open(os.path.join(work, 'merged.pth'), 'w').write('x')
json.dump(dict(task=task, group_norms={g: 1.0 for g in groups},
               groups_exactly_zero=zero, h_mean=0.8 - 0.005 * (alpha > 0),
               mAP_forget_after=0.0, mAP_retain_before=0.8,
               mAP_retain_after=0.79, mAP_old_after=0.0,
               residual_after={'residual_own@0.3': 0.0,
                               'residual_any@0.3': 0.0},
               controller=dict(status='met', steps=25 * task),
               argv=argv), open(os.path.join(work, 'forget_report.json'), 'w'))
'''


def test_sweep_loop_progress_reuse_and_outputs(tmp_path, monkeypatch, capfd):
    import gslora_det.report.summary as summary_mod
    from gslora_det.benchmark.sparsity_run import ModelSpec, run_sweep
    from gslora_det.sequence import run_sequence
    monkeypatch.setattr(summary_mod, 'write_run_summary',
                        lambda *a, **k: None)
    script = tmp_path / 'fake_train.py'
    script.write_text(FAKE_TRAIN)
    tasks, base = fake_sequence_inputs(tmp_path)
    models = dict(tiny=ModelSpec('unused.py', str(base), tuple(tasks),
                                 data=None))
    grid = settings_grid([0, 0.03], ['proximal'])
    work = str(tmp_path / 'sweep')
    run = functools.partial(run_sequence, python=sys.executable,
                            train_script=str(script))
    results = run_sweep(models, grid, work, run=run)
    out = capfd.readouterr().out
    assert '[sparsity] 1 model(s) x 2 setting(s): 4 task runs, 0 done' in out
    assert ('[sparsity] setting 2/2 (tiny, proximal α = 0.03), task 2/2 '
            'finished in ') in out
    assert 'ETA unknown (4 task runs left)' in out
    assert 'finished in 0:00:0' in out and 'nothing left)' in out
    argv = results[1]['rows'][0]
    assert argv['groups_zero'] == 4 and argv['adapter_nonzero'] is None
    with open(osp.join(work, 'tiny', 'proximal_a0.03', 'task_1',
                       'forget_report.json')) as f:
        child = json.load(f)['argv']
    assert 'model.group_lasso_cfg.mode=proximal' in child
    assert results[1]['summary']['target']
    assert not results[0]['summary']['target']  # plain LoRA: no zeros
    for ext in ('md', 'json', 'png'):
        assert osp.getsize(osp.join(work, f'sparsity_sweep.{ext}')) > 0
    assert not [p for p in (tmp_path / 'sweep').iterdir()
                if p.name.endswith('.tmp')]
    # Everything reused; another output stem beside the first outputs.
    run_sweep(models, grid, work, run=run, out_name='sweep_b')
    out = capfd.readouterr().out
    assert '4 task runs, 4 done already' in out
    assert out.count('done already') == 5
    assert osp.getsize(osp.join(work, 'sweep_b.md')) > 0
    assert osp.getsize(osp.join(work, 'sparsity_sweep.md')) > 0


def test_sweep_goes_on_after_a_failed_setting_and_skips_foreign_runs(
        tmp_path, capsys):
    from gslora_det.benchmark.sparsity_run import ModelSpec, run_sweep
    from gslora_det.sequence import SequenceError
    base = tmp_path / 'base.pth'
    base.write_text('base')
    work = tmp_path / 'sweep'
    grid = settings_grid([0, 0.03], ['penalty'])
    for setting, options in ((grid[0], ['other=1']),
                             (grid[1], grid[1].cfg_options())):
        folder = work / 'tiny' / setting.slug
        (folder / 'task_1').mkdir(parents=True)
        (folder / 'task_1' / 'merged.pth').write_text('x')
        (folder / 'task_1' / 'forget_report.json').write_text(
            json.dumps(report(zero=HALF)))
        (folder / 'sequence.json').write_text(json.dumps(
            dict(cfg_options=options)))

    def failing(tasks, base, folder, **kwargs):
        raise SequenceError('task 2 failed')

    models = dict(tiny=ModelSpec('unused.py', str(base), ('t1.py', 't2.py'),
                                 data=None))
    results = run_sweep(models, grid, str(work), run=failing)
    assert [r['error'] for r in results] == ['task 2 failed'] * 2
    assert results[0]['rows'] == []  # a run of other options: not ours
    assert [r['task'] for r in results[1]['rows']] == [1]
    assert not results[1]['summary']['complete']
    assert 'setting 2/2 failed: task 2 failed' in capsys.readouterr().out


# ----------------------------------------------------- the 6 + 6 model
def test_six_by_six_configs_parse_and_build_twelve_groups():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    import gslora_det  # noqa: F401
    register_all_modules()
    from gslora_det.benchmark.sparsity_run import MODELS as SWEEP_MODELS
    spec = SWEEP_MODELS['shapes6']
    pre = Config.fromfile(spec.pretrain)
    assert (pre.model.encoder.num_layers, pre.model.decoder.num_layers) == \
        (6, 6)
    three = Config.fromfile(osp.join(
        CONFIGS, 'shapes', 'deformable-detr_r18-tiny_5e_shapes.py'))
    pre.model.encoder.num_layers = pre.model.decoder.num_layers = 3
    assert pre.model == three.model  # only the layer counts differ
    for k, path in enumerate(spec.tasks, start=1):
        cfg = Config.fromfile(path)
        assert cfg.forget_task.index == k
        assert cfg.model.decoder.num_layers == 6
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(spec.tasks[0]).model)
    assert type(model).__name__ == 'GSLoRADeformableDETR'
    assert list(model.lora_groups()) == [
        f'{p}.layers.{i}' for p in ('encoder', 'decoder') for i in range(6)]
    assert len(model.bbox_head.cls_branches) == 6  # one per decoder layer


# -------------------------------------------------------------- the CLIs
def load_cli():
    import importlib.util
    module = load_script('benchmarks/sparsity_sweep.py', 'sparsity_sweep')
    return module


def test_sweep_plan_counts_task_runs(tmp_path, capsys):
    load_cli().main(['--plan', '--work-dir', str(tmp_path), '--alphas', '0',
                     '0.01', '--models', 'shapes6', 'bccd'])
    out = capsys.readouterr().out
    assert '6 settings, 15 task runs, 0 done, 15 to run' in out
    assert osp.join(str(tmp_path), 'shapes6', 'proximal_a0.01') in out
    with pytest.raises(SystemExit, match='not in --models'):
        load_cli().main(['--plan', '--models', 'shapes',
                         '--bases', 'bccd=x.pth'])


@pytest.mark.slow  # a fresh interpreter importing mmdet: ~5-15 s each
@pytest.mark.parametrize('script', ['sparsity_sweep.py',
                                    'compare_methods.py'])
def test_cli_help(script):
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'benchmarks', script), '--help'],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '--work-dir' in proc.stdout
    if script == 'compare_methods.py':
        assert '--seeds' in proc.stdout and '--iters' in proc.stdout



# ------------------------------------------- one real tiny proximal task
@pytest.mark.slow
def test_proximal_setting_trains_a_real_default_task(workspace, monkeypatch,
                                                     tmp_path):
    """The sweep's proximal options on the one default (task 1, 2 steps on
    the tiny set, from random weights): the pre-flight check accepts them,
    the prox trains, and a large α leaves every group exactly zero."""
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    import gslora_det  # noqa: F401
    from gslora_det.benchmark.sparsity_run import MODELS, ModelSpec, \
        run_sweep
    from gslora_det.checkpoint import save_checkpoint_atomic
    from test_forgetting_default_e2e import ALWAYS_MET, DEFAULT_TINY
    register_all_modules()
    torch.manual_seed(0)
    detector = MMDET_MODELS.build(Config.fromfile(
        MODELS['shapes'].pretrain).model)
    # Built parameters such as level_embed are uninitialised memory until
    # init_weights (NaN at times: the task then fails on a non-finite loss).
    detector.init_weights()
    base = str(tmp_path / 'random_base.pth')
    save_checkpoint_atomic(dict(meta={}, state_dict=detector.state_dict()),
                           base)
    monkeypatch.chdir(workspace)  # the configs read data/shapes
    models = dict(shapes=ModelSpec(MODELS['shapes'].pretrain, base,
                                   MODELS['shapes'].tasks[:1], data=None))
    # The setting's own warm-up (0), not the tiny runs' scaled-down one:
    # with a warm-up, 2 steps would never reach the prox.
    tiny = [o for o in DEFAULT_TINY if 'group_lasso_cfg' not in o]
    results = run_sweep(models, [Setting(10.0, 'proximal')],
                        str(tmp_path / 'sweep'),
                        cfg_options=[*tiny, *ALWAYS_MET,
                                     'train_cfg.max_iters=2'])
    assert results[0]['error'] is None
    row, = results[0]['rows']
    assert row['steps'] == 2
    assert (row['groups_zero'], row['groups_total']) == (6, 6)
    assert row['on'] == []
