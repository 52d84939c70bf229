"""Adapter folders (adapter_config.json + adapter_model.safetensors), the
single-file format they replace, and tools/apply_adapter.py: merge, unmerge,
and what is refused."""
import copy
import json
import os
import os.path as osp

import pytest
import torch

from conftest import TASK_CFGS, load_script, run_tool

CLASSES = dict(forget=['blue_triangle', 'orange_star'],
               retain=['red_circle'], old=[])


def _close(a, b, atol=1e-6):
    assert set(a) == set(b)
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=atol), key


@pytest.fixture(scope='module')
def task(tmp_path_factory):
    """A tiny GS-LoRA model with a non-trivial LoRA, as a finished task:
    base.pth, merged.pth and the adapter written by save_task_adapter."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    from gslora_det.adapter import save_task_adapter
    from gslora_det.checkpoint import save_checkpoint_atomic, sha256_file
    from gslora_det.inject import (is_lora_param, lora_state_dict,
                                   merged_state_dict)
    cfg = Config.fromfile(TASK_CFGS[0])
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(copy.deepcopy(cfg.model))
    torch.manual_seed(0)
    model.init_weights()  # uninitialised parameters (level_embed) may be NaN
    for name, param in model.named_parameters():
        if name.endswith('lora_B'):
            param.data.normal_()
    root = tmp_path_factory.mktemp('adapter_task')
    base = {k: v.clone() for k, v in model.state_dict().items()
            if not is_lora_param(k)}
    meta = dict(dataset_meta=dict(classes=('a', 'b')))
    save_checkpoint_atomic(dict(meta=meta, state_dict=base),
                           str(root / 'base.pth'))
    merged = merged_state_dict(model)
    save_checkpoint_atomic(dict(meta=meta, state_dict=merged),
                           str(root / 'merged.pth'))
    folder = save_task_adapter(
        str(root), lora_state_dict(model), model, CLASSES, task_index=1,
        base_sha256=sha256_file(str(root / 'base.pth')),
        merged_path=str(root / 'merged.pth'))
    return dict(root=root, folder=folder, base=base, merged=merged,
                model=model)


def test_folder_layout_and_config(task):
    from gslora_det.adapter import (FORMAT_VERSION, load_adapter,
                                    read_adapter)
    from gslora_det.checkpoint import sha256_file
    root, folder = task['root'], task['folder']
    assert sorted(os.listdir(folder)) == ['adapter_config.json',
                                          'adapter_model.safetensors']
    with open(osp.join(folder, 'adapter_config.json')) as f:
        config = json.load(f)
    assert config['format_version'] == FORMAT_VERSION
    assert (config['rank'], config['alpha']) == (8, 1.0)
    assert config['scaling'] == pytest.approx(1 / 8)
    assert config['task_index'] == 1
    assert config['forget_classes'] == CLASSES['forget']
    assert config['retained_classes'] == CLASSES['retain']
    assert config['previously_forgotten'] == []
    assert config['base_checkpoint_sha256'] == sha256_file(
        str(root / 'base.pth'))
    assert config['merged_checkpoint_sha256'] == sha256_file(
        str(root / 'merged.pth'))
    assert config['detector_type'] == 'GSLoRADeformableDETR'
    assert config['base_detector_type'] == 'DeformableDETR'
    assert len(config['group_names']) == 6 and config['targets']
    assert config['gslora_det_version']
    assert len(config['layers']) == 12
    assert config['layers']['encoder.layers.0.ffn.layers.1'] == [128, 512]
    # weights: LoRA tensors only; the single-file copy has the same bytes
    tensors, meta = load_adapter(osp.join(folder,
                                          'adapter_model.safetensors'))
    assert len(tensors) == 24 and all('.lora_' in k for k in tensors)
    assert meta['scaling'] == pytest.approx(1 / 8) and meta['task'] == 1
    assert sha256_file(str(root / 'adapter.safetensors')) == sha256_file(
        osp.join(folder, 'adapter_model.safetensors'))
    old_tensors, old_config = read_adapter(str(root / 'adapter.safetensors'))
    assert old_config.scaling == pytest.approx(1 / 8)
    assert old_config.layers == config['layers']


def test_merge_and_unmerge_state_dicts(task):
    from gslora_det.apis import merge_adapter
    merged = merge_adapter(task['base'], task['folder'])
    _close(merged, task['merged'])
    _close(merge_adapter(merged, task['folder'], unmerge=True), task['base'])
    # a checkpoint path is hash-checked: base for a merge, merged for undo
    _close(merge_adapter(str(task['root'] / 'base.pth'), task['folder']),
           task['merged'])
    _close(merge_adapter(str(task['root'] / 'merged.pth'), task['folder'],
                         unmerge=True), task['base'])


def test_other_architecture_is_refused(task):
    from gslora_det.adapter import AdapterError
    from gslora_det.apis import merge_adapter
    key = 'encoder.layers.0.ffn.layers.1.weight'
    other = dict(task['base'])
    other[key] = torch.zeros(64, 512)
    with pytest.raises(AdapterError, match=r'\[64, 512\].*\[128, 512\]'):
        merge_adapter(other, task['folder'])
    del other[key]
    with pytest.raises(AdapterError, match='missing'):
        merge_adapter(other, task['folder'], force=True)
    training = dict(task['base'], **{
        key.replace('weight', 'lora_A'): torch.zeros(8, 512)})
    with pytest.raises(AdapterError, match='training checkpoint'):
        merge_adapter(training, task['folder'])


def test_old_single_file_adapter_still_merges(task, tmp_path):
    """A file of the older writer: six metadata keys, no config."""
    from gslora_det.adapter import load_adapter, save_adapter
    from gslora_det.apis import merge_adapter
    tensors, _ = load_adapter(osp.join(task['folder'],
                                       'adapter_model.safetensors'))
    path = str(tmp_path / 'adapter.safetensors')
    save_adapter(tensors, path, dict(task=1, rank=8, alpha=1.0,
                                     scaling=0.125, forget_classes=['x'],
                                     group_pattern='(.*)'))
    _close(merge_adapter(task['base'], path), task['merged'])


def _apply_main():
    module = load_script('tools/apply_adapter.py', 'apply_adapter')
    return module.main


def test_apply_adapter_cli(task, tmp_path, capsys):
    from gslora_det.checkpoint import (load_checkpoint_safely,
                                       save_checkpoint_atomic, sha256_file)
    root, folder = task['root'], task['folder']
    base, merged = str(root / 'base.pth'), str(root / 'merged.pth')
    base_sha = sha256_file(base)
    # as a user runs it: merge, then unmerge the result's twin
    out = str(tmp_path / 'merged_again.pth')
    proc = run_tool('apply_adapter.py', base, folder, '-o', out,
                    cwd=str(tmp_path))
    assert '12 LoRA layers' in proc.stdout and 'merged into' in proc.stdout
    ckpt = load_checkpoint_safely(out)
    _close(ckpt['state_dict'], task['merged'])
    assert ckpt['meta']['dataset_meta'] == dict(classes=('a', 'b'))
    assert ckpt['meta']['gslora_adapter']['action'] == 'merge'
    main = _apply_main()
    again = str(tmp_path / 'base_again.pth')
    main([merged, folder, '--unmerge', '-o', again])
    _close(load_checkpoint_safely(again)['state_dict'], task['base'])
    assert sha256_file(base) == base_sha  # inputs are only read
    # never onto the input
    with pytest.raises(SystemExit, match='is the input checkpoint'):
        main([base, folder, '-o', base])
    # another base: refused, unless forced (with a warning)
    other = str(tmp_path / 'other.pth')
    state = dict(task['base'])
    state['query_embedding.weight'] = state['query_embedding.weight'] + 1
    save_checkpoint_atomic(dict(state_dict=state), other)
    with pytest.raises(SystemExit, match='not the base .*--force'):
        main([other, folder, '-o', str(tmp_path / 'x.pth')])
    assert not osp.exists(tmp_path / 'x.pth')
    main([other, folder, '-o', str(tmp_path / 'x.pth'), '--force'])
    assert 'warning: ' in capsys.readouterr().err
    # unmerge without a recorded merged hash: checked by nothing, warned
    config_path = osp.join(folder, 'adapter_config.json')
    with open(config_path) as f:
        config = json.load(f)
    unrecorded = tmp_path / 'unrecorded'
    unrecorded.mkdir()
    config['merged_checkpoint_sha256'] = None
    (unrecorded / 'adapter_config.json').write_text(json.dumps(config))
    os.link(osp.join(folder, 'adapter_model.safetensors'),
            unrecorded / 'adapter_model.safetensors')
    main([other, str(unrecorded), '--unmerge', '-o',
          str(tmp_path / 'y.pth')])
    assert 'records no merged checkpoint SHA-256' in capsys.readouterr().err
    # another architecture: refused even with --force
    state['encoder.layers.0.ffn.layers.1.weight'] = torch.zeros(64, 512)
    save_checkpoint_atomic(dict(state_dict=state), other)
    with pytest.raises(SystemExit, match='architecture'):
        main([other, folder, '-o', str(tmp_path / 'z.pth'), '--force'])


@pytest.mark.slow
def test_sequence_adapters_merge_unmerge_and_verify(workspace, sequence_run,
                                                    base_checkpoint,
                                                    tmp_path):
    """The 2-task sequence's adapter folders give its merged checkpoints
    back from their inputs (and the inputs back), through the CLI."""
    import shutil
    from gslora_det.checkpoint import load_checkpoint_safely, sha256_file
    run = sequence_run[0]
    previous = base_checkpoint
    main = _apply_main()
    for k in (1, 2):
        folder = osp.join(run, f'task_{k}')
        adapter = osp.join(folder, 'adapter')
        with open(osp.join(adapter, 'adapter_config.json')) as f:
            config = json.load(f)
        assert config['task_index'] == k
        assert config['base_checkpoint_sha256'] == sha256_file(previous)
        merged_path = osp.join(folder, 'merged.pth')
        assert config['merged_checkpoint_sha256'] == sha256_file(merged_path)
        merged = load_checkpoint_safely(merged_path)['state_dict']
        base = load_checkpoint_safely(previous)['state_dict']
        out, back = str(tmp_path / f'm{k}.pth'), str(tmp_path / f'b{k}.pth')
        # the tool's own main (its CLI in a child process: see
        # test_apply_adapter_cli), in this process to spare 4 start-ups
        main([previous, adapter, '-o', out])
        _close(load_checkpoint_safely(out)['state_dict'], merged)
        main([merged_path, adapter, '--unmerge', '-o', back])
        _close(load_checkpoint_safely(back)['state_dict'], base, atol=1e-5)
        previous = merged_path
    assert config['previously_forgotten'] == ['blue_triangle', 'orange_star']
    # verify.py with the folder: given, and found when the copy is gone
    task_1 = osp.join(run, 'task_1')
    proc = run_tool('verify.py', osp.join(task_1, 'merged.pth'),
                    osp.join(task_1, 'manifest.json'), '--skip-eval',
                    '--adapter', osp.join(task_1, 'adapter'), cwd=workspace)
    assert 'verified: task 1' in proc.stdout
    copy_dir = tmp_path / 'no_copy'
    copy_dir.mkdir()
    for name in ('merged.pth', 'manifest.json'):
        shutil.copy(osp.join(task_1, name), copy_dir / name)
    shutil.copytree(osp.join(task_1, 'adapter'), copy_dir / 'adapter')
    proc = run_tool('verify.py', str(copy_dir / 'merged.pth'),
                    str(copy_dir / 'manifest.json'), '--skip-eval',
                    cwd=workspace)
    assert 'verified: task 1' in proc.stdout
