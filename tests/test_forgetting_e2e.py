"""A whole (tiny) forgetting sequence end to end, as a user runs it:
tools/forget_sequence.py over two task configs from a small pretrained
model, then the outputs are checked one by one."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from conftest import PRETRAIN_CFG, REPO, TASK_CFGS, run_tool, sequence_args

REQUIRED_KEYS = [
    'task', 'forget_classes', 'retained_classes', 'previously_forgotten',
    'mAP_forget_before', 'mAP_forget_after', 'mAP_retain_before',
    'mAP_retain_after', 'mAP_old_after', 'h_mean', 'group_norms',
    'trainable_params', 'total_params', 'train_time_s'
]
def test_two_task_sequence(workspace, base_checkpoint, sequence_run):
    from gslora_det.adapter import load_adapter
    from gslora_det.checkpoint import sha256_file
    from gslora_det.inject import apply_adapter

    run, stdout, base_hash = sequence_run
    args = sequence_args(run, base_checkpoint)
    assert '| task |' in stdout

    reports = []
    for k in (1, 2):
        folder = osp.join(run, f'task_{k}')
        with open(osp.join(folder, 'forget_report.json')) as f:
            report = json.load(f)
        reports.append(report)
        for key in REQUIRED_KEYS:
            assert key in report, key
        assert report['task'] == k
        for key in ('mAP_forget_before', 'mAP_forget_after',
                    'mAP_retain_before', 'mAP_retain_after'):
            assert 0 <= report[key] <= 1
        assert len(report['group_norms']) == 6
        assert report['trainable_params'] == 6 * 2 * 8 * (128 + 512)
    assert reports[0]['mAP_old_after'] is None
    assert reports[1]['previously_forgotten'] == ['blue_triangle',
                                                  'orange_star']
    assert reports[1]['mAP_old_after'] is not None
    assert 'green_square' not in reports[1]['retained_classes']

    # task 2 started from task 1's merged model: its "before" on task 1's
    # classes is task 1's "after"
    assert osp.isfile(osp.join(run, 'task_2', 'merged.pth'))

    # base + adapter == merged, for each task
    prev = base_checkpoint
    for k in (1, 2):
        folder = osp.join(run, f'task_{k}')
        tensors, meta = load_adapter(osp.join(folder, 'adapter.safetensors'))
        assert meta['rank'] == 8 and meta['scaling'] == pytest.approx(1 / 8)
        assert all('lora_' in key for key in tensors)
        before = torch.load(prev, weights_only=True)['state_dict']
        merged = torch.load(osp.join(folder, 'merged.pth'),
                            weights_only=True)['state_dict']
        assert not any('lora_' in key for key in merged)
        assert set(merged) == set(before)
        rebuilt = apply_adapter(before, tensors, meta['scaling'])
        for key in merged:
            assert torch.allclose(rebuilt[key], merged[key], atol=1e-6), key
        prev = osp.join(folder, 'merged.pth')

    # the base checkpoint is never written to
    assert sha256_file(base_checkpoint) == base_hash

    # a second run picks up where the first stopped: nothing to redo
    proc = run_tool(*args, cwd=workspace)
    assert proc.stdout.count('done already') == 2

    # another sequence in the same run dir is refused
    proc = run_tool('forget_sequence.py', TASK_CFGS[1], '--base-checkpoint',
                    base_checkpoint, '--work-dir', run, cwd=workspace,
                    check=False)
    assert proc.returncode != 0 and 'another sequence' in proc.stderr


def test_merged_checkpoint_loads_into_stock_mmdet(workspace, sequence_run):
    """No plug-in: mmdet's DeformableDETR, strict loading, weights-only."""
    run = sequence_run[0]
    merged = osp.join(run, 'task_1', 'merged.pth')
    code = f'''
import sys, torch
from mmengine.config import Config
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
register_all_modules()
cfg = Config.fromfile({osp.join(REPO, 'configs', '_base_', 'models',
                                 'deformable-detr_r18-tiny.py')!r})
model = MODELS.build(cfg.model)
state = torch.load({merged!r}, weights_only=True)['state_dict']
model.load_state_dict(state, strict=True)
assert type(model).__name__ == 'DeformableDETR'
assert not any(m.startswith('gslora_det') for m in sys.modules)
print('stock-ok')
'''
    proc = subprocess.run([sys.executable, '-c', code], cwd=workspace,
                          capture_output=True, text=True, timeout=300)
    assert 'stock-ok' in proc.stdout, proc.stderr[-3000:]

    # and tools/test.py measures forgetting on it with the base config
    out = osp.join(run, 'test_merged.json')
    run_tool('test.py', PRETRAIN_CFG, merged, '--forget-classes',
             'blue_triangle', 'orange_star', '--before',
             osp.join(run, 'task_1', 'before_metrics.json'),
             '--metrics-out', out, '--work-dir', osp.join(run, 'test_merged'),
             '--plot-dir', osp.join(run, 'test_plot'),
             '--cfg-options', 'test_dataloader.num_workers=0',
             'test_dataloader.persistent_workers=False', cwd=workspace)
    with open(out) as f:
        metrics = json.load(f)
    with open(osp.join(run, 'task_1', 'forget_report.json')) as f:
        report = json.load(f)
    assert metrics['forgetting/mAP_forget'] == pytest.approx(
        report['mAP_forget_after'], abs=2e-3)
    assert 'forgetting/h_mean' in metrics
    assert is_png(osp.join(run, 'test_plot', 'per_class_ap.png'))


def is_png(path):
    with open(path, 'rb') as f:
        return f.read(8) == b'\x89PNG\r\n\x1a\n' and osp.getsize(path) > 1000


def test_evidence_outputs(sequence_run):
    """Per task: manifest.json (hashes of the files it names) and
    per_class_ap.png; per run: summary.md/json and the two run plots."""
    from gslora_det.checkpoint import sha256_file
    from gslora_det.report.manifest import read_manifest
    run = sequence_run[0]
    previous_merged = None
    for k in (1, 2):
        folder = osp.join(run, f'task_{k}')
        assert is_png(osp.join(folder, 'per_class_ap.png'))
        manifest = read_manifest(osp.join(folder, 'manifest.json'))
        with open(osp.join(folder, 'forget_report.json')) as f:
            report = json.load(f)
        files = manifest['files']
        assert files['merged_checkpoint']['sha256'] == sha256_file(
            osp.join(folder, 'merged.pth'))
        assert files['adapter']['sha256'] == sha256_file(
            osp.join(folder, 'adapter.safetensors'))
        assert files['input_checkpoint']['sha256'] == sha256_file(
            files['input_checkpoint']['abs_path'])
        if previous_merged:  # task 2 started from task 1's merged model
            assert files['input_checkpoint']['sha256'] == previous_merged
        previous_merged = files['merged_checkpoint']['sha256']
        assert manifest['task'] == k
        assert manifest['classes']['forget'] == report['forget_classes']
        assert manifest['classes']['previously_forgotten'] == \
            report['previously_forgotten']
        assert manifest['metrics']['after']['mAP_forget'] == \
            report['mAP_forget_after']
        assert manifest['seed'] == 0
        assert manifest['started_at'] <= manifest['finished_at']
        assert 'forget_task' in manifest['config_text']
        assert manifest['settings']['lora_cfg']['rank'] == 8
        assert manifest['settings']['replay']['sample_ratio'] == 0.5
        assert 'residual_any@0.3' in report['residual_after']

    for name in ('group_norms.png', 'map_across_tasks.png'):
        assert is_png(osp.join(run, name))
    with open(osp.join(run, 'summary.json')) as f:
        summary = json.load(f)
    assert [t['task'] for t in summary['tasks']] == [1, 2]
    assert 'residual_any@0.3_after' in summary['tasks'][0]
    with open(osp.join(run, 'summary.md')) as f:
        text = f.read()
    for link in ('](group_norms.png)', '](map_across_tasks.png)',
                 '](task_1/per_class_ap.png)', '](task_2/per_class_ap.png)'):
        assert link in text
    assert 'residual own / any @0.3 after' in text
    assert '`forget_cfg`' in text and '`replay`' in text
    assert 'train_cfg.max_iters=4' in text  # the cfg options of the run


def run_verify(workspace, merged, manifest, *extra, check=True):
    return run_tool('verify.py', merged, manifest, *extra, cwd=workspace,
                    check=check)


def test_verify_untampered(workspace, sequence_run):
    """tools/verify.py passes on the run's outputs, with a re-evaluation
    of the forgotten classes on the test data named on the command line."""
    run = sequence_run[0]
    folder = osp.join(run, 'task_2')
    proc = run_verify(workspace, osp.join(folder, 'merged.pth'),
                      osp.join(folder, 'manifest.json'), '--data-root',
                      'data/shapes/', '--max-forget-map', '1.0',
                      '--cfg-options', 'test_dataloader.num_workers=0',
                      'test_dataloader.persistent_workers=False')
    assert 'verified: task 2' in proc.stdout
    assert '3 sha256 match' in proc.stdout and 'mAP_forget' in proc.stdout
    folder = osp.join(run, 'task_1')
    proc = run_verify(workspace, osp.join(folder, 'merged.pth'),
                      osp.join(folder, 'manifest.json'), '--skip-eval')
    assert 'verified: task 1' in proc.stdout


def copy_task(run, dst):
    """Copy task 1's merged checkpoint, adapter and manifest to ``dst``."""
    import shutil
    dst.mkdir()
    for name in ('merged.pth', 'adapter.safetensors', 'manifest.json'):
        shutil.copy(osp.join(run, 'task_1', name), dst / name)
    return str(dst / 'merged.pth'), str(dst / 'manifest.json')


def test_verify_catches_tampered_checkpoint(workspace, sequence_run,
                                            tmp_path):
    from gslora_det.checkpoint import (load_checkpoint_safely,
                                       save_checkpoint_atomic, sha256_file)
    merged, manifest = copy_task(sequence_run[0], tmp_path / 'ckpt')
    expected = sha256_file(merged)
    ckpt = load_checkpoint_safely(merged)
    key = next(k for k in ckpt['state_dict'] if k.endswith('ffn.layers.1'
                                                           '.weight'))
    ckpt['state_dict'][key].view(-1)[0] += 1.0  # flip one weight
    save_checkpoint_atomic(ckpt, merged)
    proc = run_verify(workspace, merged, manifest, '--skip-eval',
                      check=False)
    assert proc.returncode != 0
    assert f'MISMATCH: merged_checkpoint {merged}: sha256 expected ' \
        f'{expected}, found {sha256_file(merged)}' in proc.stderr
    assert key in proc.stderr  # the merge check names the tensor
    assert 'verified' not in proc.stdout


def test_verify_catches_tampered_adapter(workspace, sequence_run, tmp_path):
    from gslora_det.adapter import load_adapter, save_adapter
    merged, manifest = copy_task(sequence_run[0], tmp_path / 'adapter')
    path = str(tmp_path / 'adapter' / 'adapter.safetensors')
    tensors, meta = load_adapter(path)
    key = sorted(k for k in tensors if k.endswith('lora_B'))[0]
    tensors[key] = tensors[key] + 0.01  # change one tensor
    save_adapter(tensors, path, meta)
    proc = run_verify(workspace, merged, manifest, '--skip-eval',
                      check=False)
    assert proc.returncode != 0
    assert f'MISMATCH: adapter {path}: sha256 expected' in proc.stderr
    assert 'input + adapter' in proc.stderr
