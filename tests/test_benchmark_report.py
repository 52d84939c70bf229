"""The benchmark's and the α sweep's tables and plots, on hand-made
reports (the runs themselves are benchmarks, not tests)."""
import json
import os.path as osp

import pytest

from conftest import load_script
from gslora_det.benchmark.table import (markdown_table, method_row,
                                        write_results)


def report(task, forget_after, retain_after, h, norms=None):
    return dict(task=task, mAP_forget_before=0.8,
                mAP_forget_after=forget_after, mAP_retain_before=0.85,
                mAP_retain_after=retain_after, mAP_old_after=0.01 * task,
                h_mean=h, trainable_params=61440,
                residual_after={'residual_own@0.3': 0.0,
                                'residual_any@0.3': 0.25},
                group_norms=norms or {'encoder.layers.0': 5.0,
                                      'decoder.layers.0': 0.01})


def cost(sec, mib, trainable=61440):
    return dict(sec_per_iter=sec, memory=dict(
        train_tensor_bytes=mib * 2**20, trainable_params=trainable))


def test_method_row_ratios_and_finals():
    row = method_row('gslora', [report(1, 0.0, 0.8, 0.8),
                                report(2, 0.1, 0.7, 0.6)],
                     cost=cost(0.5, 100), reference_cost=cost(2.0, 400),
                     inference=dict(sec_per_image=0.0105, params=10),
                     base_inference=dict(sec_per_image=0.01, params=10),
                     wall_s=600)
    assert row['h_mean_avg'] == pytest.approx(0.7)
    assert (row['mAP_forget_final'], row['mAP_old_final'],
            row['mAP_retain_final']) == (0.1, 0.02, 0.7)
    assert row['time_ratio'] == pytest.approx(0.25)
    assert row['memory_ratio'] == pytest.approx(0.25)
    assert row['inference_ratio'] == pytest.approx(1.05)
    assert row['params_identical'] is True
    assert row['residual_any_final'] == 0.25
    assert row['wall_min'] == pytest.approx(10)
    table = markdown_table([row, dict(method='x', label='X', error='nan',
                                      h_mean_per_task=[], h_mean_avg=None)])
    assert '| GS-LoRA | 80.0 / 60.0 | **70.0** | 10.0 / 2.0 / 70.0 | ' \
        '0.0 / 25.0 |' in table
    assert '0.50 (0.25)' in table and '| 1.05 | yes | 10.0 |' in table
    assert '| mean H (%) | final mAP (%) forgotten' in table
    assert '| X (failed) | – | **–** | – / – / – |' in table


def capture_figures(monkeypatch, module):
    """Make ``module._save`` keep the figure instead of writing it."""
    figures = []
    monkeypatch.setattr(module, '_save',
                        lambda fig, path: figures.append(fig) or path)
    return figures


def test_methods_plot_labels_every_bar(monkeypatch):
    import gslora_det.benchmark.table as table
    figures = capture_figures(monkeypatch, table)
    rows = [method_row('gslora', [report(1, 0.0, 0.8, 0.8),
                                  report(2, 0.1, 0.7, 0.6)]),
            dict(method='x', label='X', error='nan', h_mean_per_task=[],
                 h_mean_avg=None)]
    table.plot_methods(rows, 'unused.png')
    ax_h, ax_m = figures[0].axes
    assert [t.get_text() for t in ax_h.texts] == ['70.0', 'failed']
    # forgotten / previously forgotten / retained, each for both rows
    assert [t.get_text() for t in ax_m.texts] == [
        '10.0', 'failed', '2.0', 'failed', '70.0', 'failed']
    assert [t.get_text() for t in ax_m.get_legend().get_texts()] == [
        'forgotten (last task)', 'previously forgotten', 'retained']
    assert '(%)' in ax_m.get_xlabel()
    # one task: no previously forgotten classes, so no (empty) entry
    one = [dict(rows[0], mAP_old_final=None)]
    table.plot_methods(one, 'unused.png')
    assert [t.get_text() for t in figures[1].axes[1].get_legend()
            .get_texts()] == ['forgotten (last task)', 'retained']
    assert figures[1].axes[0].get_legend() is None  # one seed: no dots
    # several seeds: one dot per seed on the method's bar
    from gslora_det.benchmark.table import with_seeds
    seeded = [with_seeds(dict(rows[0]), {0: 0.7, 1: 0.72, 2: 0.69})]
    table.plot_methods(seeded, 'unused.png')
    ax_h = figures[2].axes[0]
    dots = ax_h.collections[-1].get_offsets()
    assert sorted(x for x, _ in dots) == pytest.approx([69.0, 70.0, 72.0])
    assert [t.get_text() for t in ax_h.get_legend().get_texts()] == [
        'each seed']


def test_write_results(tmp_path):
    rows = [method_row(m, [report(1, 0.0, 0.8, h)])
            for m, h in (('gslora', 0.8), ('ewc', 0.5))]
    out = write_results(rows, str(tmp_path / 'methods'),
                        dict(tasks=1, total_wall_min=37.64))
    for path in out.values():
        assert osp.getsize(path) > 0
    with open(out['md']) as f:  # the settings travel with the table
        assert f.read().endswith('- tasks: 1\n- total_wall_min: 37.6\n')
    with open(out['json']) as f:
        data = json.load(f)
    assert data['settings'] == dict(tasks=1, total_wall_min=37.64)
    assert data['units']['mAP'] == '0-1'  # the JSON keeps fractions
    assert data['rows'][0]['mAP_retain_final'] == 0.8
    with open(out['png'], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def load_sweep():
    module = load_script('benchmarks/alpha_sweep.py', 'alpha_sweep')
    return module


def test_alpha_sweep_counts_groups_below_one_percent(tmp_path):
    sweep = load_sweep()
    rows = [sweep.sweep_row(0.0, [report(1, 0.0, 0.8, 0.8, {
                'encoder.layers.0': 5.0, 'decoder.layers.0': 4.0})], 0.01),
            sweep.sweep_row(0.1, [report(1, 0.0, 0.8, 0.79)], 0.01)]
    assert rows[0]['fraction_off'] == 0.0
    assert rows[1]['fraction_off'] == 0.5
    assert rows[1]['tasks'][0]['off'] == ['decoder.layers.0']
    table = sweep.markdown(rows)
    assert '| 0.1 | 1/2 (50 %: decoder.layers.0) | 5 | 79.0 |' in table
    assert '| H-Mean (%) |' in table
    path = sweep.plot(rows, str(tmp_path / 'sweep.png'))
    assert osp.getsize(path) > 0


def test_alpha_sweep_heat_map_one_scale_from_zero(monkeypatch):
    """A collapsed row stays dark: no per-row normalisation; an exact 0
    is hatched and marked."""
    import gslora_det.report.plots as plots
    from gslora_det.report.plots import ZERO_GID
    sweep = load_sweep()
    rows = [sweep.sweep_row(0.0, [report(1, 0.0, 0.8, 0.8, {
                'encoder.layers.0': 5.0, 'decoder.layers.0': 4.0})], 0.01),
            sweep.sweep_row(1.0, [report(1, 0.0, 0.8, 0.1, {
                'encoder.layers.0': 0.0, 'decoder.layers.0': 0.2})], 0.01)]
    figures = capture_figures(monkeypatch, plots)
    sweep.plot(rows, 'unused.png')
    ax_hm = figures[0].axes[1]
    image = ax_hm.get_images()[0]
    assert image.get_clim() == (0.0, 5.0)
    assert image.get_array()[1].tolist() == [0.0, 0.2]  # raw norms
    zeros = [p for p in ax_hm.patches if p.get_gid() == ZERO_GID]
    assert [(p.get_x(), p.get_y()) for p in zeros] == [(-0.5, 0.5)]
    cells = {t.get_position(): t.get_text() for t in ax_hm.texts}
    assert cells[(0, 1)] == '0\noff' and cells[(1, 1)] == '0.2'
    assert [t.get_text() for t in ax_hm.get_xticklabels()] == ['enc0',
                                                               'dec0']
