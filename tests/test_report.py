"""Tests for gslora_det.report (plots, manifest, run summary) and the
checks of tools/verify.py, on hand-made reports and tiny tensors (fast)."""
import copy
import json
import os.path as osp
import shutil

import pytest
import torch

from conftest import load_script

PNG = b'\x89PNG\r\n\x1a\n'
CLASSES = ['red_circle', 'green_square', 'blue_triangle', 'yellow_diamond']
GROUPS = ['encoder.layers.0', 'encoder.layers.1', 'decoder.layers.0']


def make_report(task, forget, old, ap_after, norms, inactive=()):
    """A forget_report.json-like dict."""
    retained = [c for c in CLASSES if c not in forget + old]
    return dict(
        task=task, forget_classes=forget, retained_classes=retained,
        previously_forgotten=old,
        mAP_forget_before=0.8, mAP_forget_after=0.01,
        mAP_retain_before=0.82, mAP_retain_after=0.8,
        mAP_old_before=0.02 if old else None,
        mAP_old_after=0.01 if old else None,
        h_mean=0.79,
        per_class_AP_before={c: 0.8 for c in CLASSES},
        per_class_AP_after=ap_after,
        residual_before={'residual_num_gt': 20.0, 'residual_own@0.3': 1.0,
                         'residual_any@0.3': 1.0},
        residual_after={'residual_num_gt': 20.0, 'residual_own@0.3': 0.0,
                        'residual_any@0.3': 0.25},
        group_norms=dict(zip(GROUPS, norms)),
        inactive_groups=list(inactive), trainable_params=1234,
        total_params=99999, train_time_s=12.5)


@pytest.fixture
def reports():
    r1 = make_report(1, ['blue_triangle'], [],
                     dict(red_circle=0.8, green_square=0.81,
                          blue_triangle=0.0, yellow_diamond=0.79),
                     [1.0, 2.0, 3.0])
    r2 = make_report(2, ['green_square'], ['blue_triangle'],
                     dict(red_circle=0.78, green_square=0.02,
                          blue_triangle=0.0, yellow_diamond=None),
                     [1e-4, 2.5, 3.5], inactive=['encoder.layers.0'])
    return [r1, r2]


def is_png(path):
    with open(path, 'rb') as f:
        head = f.read(8)
    return head == PNG and osp.getsize(path) > 1000


# ------------------------------------------------------------------ plots
def test_per_class_plot(tmp_path, reports):
    from gslora_det.report.plots import plot_per_class_ap
    for r in reports:
        path = str(tmp_path / f't{r["task"]}' / 'per_class_ap.png')
        assert plot_per_class_ap(r, path) == path
        assert is_png(path)
    # without "before" values (tools/test.py without --before)
    r = dict(reports[0], per_class_AP_before={})
    assert is_png(plot_per_class_ap(r, str(tmp_path / 'after_only.png')))
    assert not list(tmp_path.rglob('*.tmp'))  # written atomically


def test_class_roles_order(reports):
    from gslora_det.report.plots import class_roles
    roles = class_roles(reports[1])
    assert list(roles.items())[:3] == [
        ('green_square', 'forget'), ('blue_triangle', 'old'),
        ('red_circle', 'retain')]


def test_group_norm_heat_map(tmp_path, reports):
    """One colour scale [0, largest norm] for every task (not per row, not
    from the smallest norm); an exact 0 gets a hatched patch and a "0"."""
    from gslora_det.report.plots import (ZERO_GID, group_norms_figure,
                                         plot_group_norms)
    assert is_png(plot_group_norms(reports, str(tmp_path / 'g.png')))
    runs = copy.deepcopy(reports)
    runs[1]['group_norms']['encoder.layers.1'] = 0.0  # task 2, column 1
    runs[0]['group_norms']['decoder.layers.9'] = 0.5  # absent in task 2
    ax, bar = group_norms_figure(runs).axes
    image, = ax.get_images()  # raw norms (not normalised), scale from 0
    assert image.get_clim() == (0.0, 3.5) and image.get_array()[0, 0] == 1
    zero, = [p for p in ax.patches if p.get_gid() == ZERO_GID]
    assert (zero.get_x(), zero.get_y(), zero.get_hatch()) == (0.5, 0.5, '///')
    cells = {t.get_position(): t.get_text() for t in ax.texts}
    assert (cells[(1, 1)], cells[(3, 1)], cells[(2, 0)]) == ('0', 'n/a', '3')
    assert cells[(0, 1)] == '0.0001\noff'  # below 1 %: "off", still drawn
    assert ax.get_legend().get_texts()[0].get_text() == 'exactly 0'
    assert 'norm' in bar.get_ylabel() and bar.get_ylim()[0] == 0.0
    # The prox zeroes B only: a norm above 0 whose update is exactly zero
    # (groups_exactly_zero) is drawn as a hatched 0 too.
    runs[0]['groups_exactly_zero'] = ['encoder.layers.0']
    ax, _ = group_norms_figure(runs).axes
    zeros = sorted((p.get_x(), p.get_y()) for p in ax.patches
                   if p.get_gid() == ZERO_GID)
    assert zeros == [(-0.5, -0.5), (0.5, 0.5)]


def test_map_across_tasks(tmp_path, reports):
    """Left: each task's own sets as labelled bars, no line; right: one
    line per class set that is the same at every point."""
    from gslora_det.report.plots import (map_across_tasks_figure,
                                         plot_map_across_tasks)
    for n in (1, 2):  # one task, two tasks
        assert is_png(plot_map_across_tasks(reports[:n],
                                            str(tmp_path / f'{n}.png')))
    ax_t, ax_s = map_across_tasks_figure(reports).axes
    assert ax_t.get_lines() == [] and '(%)' in ax_t.get_ylabel()
    assert len(ax_t.get_legend().get_texts()) == 5  # forget/retain ×2, old
    # values in %, per set: forget 80 -> 1, retain 82 -> 80, old (task 2)
    assert [t.get_text() for t in ax_t.texts] == [
        '80', '80', '1', '1', '82', '82', '80', '80', '', '1']
    lines = {line.get_label(): list(line.get_ydata())
             for line in ax_s.get_lines()}
    assert lines == {  # at base, after task 1, after task 2
        'forgotten in task 1': [80.0, 0.0, 0.0],  # blue_triangle
        'forgotten in task 2': [80.0, 81.0, 2.0],  # green_square
        'retained at the end (2 classes)': [80.0, 79.5, 78.0]}  # None: out


def test_per_class_ap_from_metrics():
    from gslora_det.report.plots import per_class_ap
    metrics = {'forgetting/AP_red_circle': 0.5, 'AP_blue_triangle': 0.25,
               'forgetting/mAP_forget': 0.1, 'input_checkpoint': 'x.pth'}
    assert per_class_ap(metrics) == dict(red_circle=0.5,
                                         blue_triangle=0.25)


# --------------------------------------------------------------- manifest
@pytest.fixture
def task_files(tmp_path):
    """input.pth, task/adapter.safetensors, task/merged.pth (tiny)."""
    from gslora_det.adapter import save_adapter
    from gslora_det.checkpoint import save_checkpoint_atomic
    from gslora_det.inject import apply_adapter
    torch.manual_seed(0)
    layer = 'encoder.layers.0.ffn.layers.1'
    base = {f'{layer}.weight': torch.randn(4, 6),
            f'{layer}.bias': torch.randn(4),
            'bn.num_batches_tracked': torch.tensor(3)}
    adapter = {f'{layer}.lora_A': torch.randn(2, 6),
               f'{layer}.lora_B': torch.randn(4, 2)}
    task = tmp_path / 'task_1'
    save_checkpoint_atomic(dict(meta={}, state_dict=base),
                           str(tmp_path / 'input.pth'))
    save_adapter(adapter, str(task / 'adapter.safetensors'),
                 metadata=dict(rank=2, alpha=1.0, scaling=0.5))
    save_checkpoint_atomic(
        dict(meta={}, state_dict=apply_adapter(base, adapter, 0.5)),
        str(task / 'merged.pth'))
    return tmp_path


def make_manifest(folder):
    from gslora_det.report.manifest import build_manifest
    return build_manifest(
        task=1, work_dir=str(folder / 'task_1'),
        input_checkpoint=str(folder / 'input.pth'),
        adapter_name='adapter.safetensors', merged_name='merged.pth',
        classes=dict(forget=['blue_triangle'], retain=['red_circle'],
                     old=[]),
        config=dict(model=dict(type='X', lora_cfg=dict(rank=(2, ))),
                    randomness=dict(seed=0)),
        config_text='model = dict(type="X")\n',
        settings=dict(lora_cfg=dict(rank=2), replay=dict(sample_ratio=0.1)),
        seed=0, randomness=dict(seed=0), started_at='2025-01-01T00:00:00'
        '+00:00', finished_at='2025-01-01T01:00:00+00:00',
        metrics_before=dict(mAP_forget=0.8, input_checkpoint='input.pth'),
        metrics_after=dict(mAP_forget=0.0, mAP_retain=0.7))


def test_manifest_round_trip(task_files):
    from gslora_det.checkpoint import sha256_file
    from gslora_det.report.manifest import (manifest_file, read_manifest,
                                            write_manifest)
    manifest = make_manifest(task_files)
    path = str(task_files / 'task_1' / 'manifest.json')
    write_manifest(manifest, path)
    assert read_manifest(path) == manifest
    files = manifest['files']
    for key, name in (('input_checkpoint', 'input.pth'),
                      ('adapter', 'task_1/adapter.safetensors'),
                      ('merged_checkpoint', 'task_1/merged.pth')):
        assert files[key]['sha256'] == sha256_file(str(task_files / name))
        assert manifest_file(manifest, key, path) == str(task_files / name)
    assert files['adapter']['path'] == 'adapter.safetensors'
    assert manifest['config']['model']['lora_cfg']['rank'] == [2]
    assert manifest['metrics']['before'] == dict(mAP_forget=0.8)
    versions = manifest['versions']
    for pkg in ('torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet',
                'gslora_det', 'python'):
        assert versions[pkg], pkg
    assert manifest['classes']['previously_forgotten'] == []


def test_read_manifest_rejects_other_json(tmp_path):
    from gslora_det.report.manifest import read_manifest
    path = tmp_path / 'x.json'
    path.write_text(json.dumps(dict(task=1)))
    with pytest.raises(ValueError, match='not a gslora_det manifest'):
        read_manifest(str(path))


def load_verify():
    module = load_script('tools/verify.py', 'verify_tool')
    return module


def test_verify_checks(task_files):
    """verify.py's hash and merge checks pass on the files, and catch a
    flipped weight and a changed adapter tensor."""
    from gslora_det.adapter import load_adapter, save_adapter
    from gslora_det.checkpoint import (load_checkpoint_safely,
                                       save_checkpoint_atomic)
    verify = load_verify()
    manifest = make_manifest(task_files)
    task = task_files / 'task_1'
    paths = dict(input_checkpoint=str(task_files / 'input.pth'),
                 adapter=str(task / 'adapter.safetensors'),
                 merged_checkpoint=str(task / 'merged.pth'))
    failures = []
    verify.check_hashes(manifest, paths, failures)
    assert 'merged = input + adapter' in verify.check_merge(paths, 1e-5,
                                                            failures)
    assert failures == []

    bad = task_files / 'bad'
    bad.mkdir()
    ckpt = load_checkpoint_safely(paths['merged_checkpoint'])
    ckpt['state_dict']['encoder.layers.0.ffn.layers.1.weight'][0, 0] *= -1
    save_checkpoint_atomic(ckpt, str(bad / 'merged.pth'))
    tensors, meta = load_adapter(paths['adapter'])
    tensors['encoder.layers.0.ffn.layers.1.lora_B'][1, 1] += 0.1
    save_adapter(tensors, str(bad / 'adapter.safetensors'), meta)
    for key, name in (('merged_checkpoint', 'merged.pth'),
                      ('adapter', 'adapter.safetensors')):
        failures = []
        tampered = dict(paths, **{key: str(bad / name)})
        verify.check_hashes(manifest, tampered, failures)
        verify.check_merge(tampered, 1e-5, failures)
        assert len(failures) == 2, failures
        assert failures[0].startswith(key) and 'sha256 expected' in \
            failures[0]
        assert 'input + adapter' in failures[1]


# ---------------------------------------------------------------- summary
def test_run_summary(tmp_path, reports):
    from gslora_det.report.manifest import write_manifest
    from gslora_det.report.summary import write_run_summary
    run = tmp_path / 'run'
    for r in reports:
        folder = run / f'task_{r["task"]}'
        folder.mkdir(parents=True)
        (folder / 'forget_report.json').write_text(json.dumps(r))
        write_manifest(dict(settings=dict(
            lora_cfg=dict(rank=8), forget_cfg=dict(beta=0.1 * r['task']),
            replay=dict(sample_ratio=0.1))), str(folder / 'manifest.json'))
    summary = write_run_summary(str(run), reports, ['t1.py', 't2.py'],
                                'base.pth', ['a=1'], title='my run')
    with open(run / 'summary.json') as f:
        assert json.load(f) == summary
    assert summary['units']['mAP'] == '0-1'  # the JSON keeps fractions
    text = (run / 'summary.md').read_text()
    assert text.startswith('# my run')
    assert '| mAP forget before → after (%) |' in text  # the table: %
    assert '| 2 | green_square | 80.0 → 1.0 | 82.0 → 80.0 | 1.0 | 79.0 | '\
        '0.0 / 25.0 | – | 1/3 | 1,234 | 12 |' in text
    for png in ('group_norms.png', 'map_across_tasks.png',
                'task_1/per_class_ap.png', 'task_2/per_class_ap.png'):
        assert f']({png})' in text
        assert is_png(str(run / png))
    assert '`lora_cfg`: `{"rank": 8}`' in text  # same in both tasks
    assert '  - task 2: `{"beta": 0.2}`' in text  # differs per task
    assert '`t1.py`' in text and '`base.pth`' in text and '`a=1`' in text
    assert summary['tasks'][1]['residual_any@0.3_after'] == 0.25
    assert summary['tasks'][0]['settings']['forget_cfg'] == dict(beta=0.1)


def test_summary_reads_dumped_config(tmp_path, reports):
    """A task without a manifest: settings come from the dumped config."""
    from gslora_det.report.summary import task_settings
    folder = tmp_path / 'task_1'
    folder.mkdir()
    (folder / 'task1.py').write_text(
        "model = dict(forget_cfg=dict(beta=0.5))\n"
        "replay = dict(sample_ratio=0.1, k_shot=None)\n")
    settings = task_settings(str(folder), 'configs/task1.py')
    assert settings['forget_cfg'] == dict(beta=0.5)
    assert settings['replay'] == dict(sample_ratio=0.1, k_shot=None)
    shutil.rmtree(folder)
    folder.mkdir()
    assert task_settings(str(folder)) == {}
