"""tools/list_lora_targets.py: candidates, selection, groups, errors."""
import os.path as osp

import pytest

from conftest import CONFIGS, TASK_CFGS, load_script


@pytest.fixture(scope='module')
def tool():
    module = load_script('tools/list_lora_targets.py', 'list_lora_targets')
    return module


def marked(out):
    return [line.split()[1] for line in out.splitlines()
            if line.startswith('  * ')]


def test_default_targets_of_a_gslora_config(tool, capsys):
    assert tool.main([TASK_CFGS[0]]) == 0
    out = capsys.readouterr().out
    assert 'GSLoRADeformableDETR (stock class DeformableDETR)' in out
    assert sorted(marked(out)) == sorted(
        f'{p}.layers.{i}.ffn.layers.{j}' for p in ('encoder', 'decoder')
        for i in range(3) for j in ('0.0', '1'))
    # unselected candidates are listed too, with their shapes
    assert 'bbox_head.cls_branches.0' in out and '128 -> 8' in out
    assert '6 groups' in out
    assert f'{6 * 2 * 8 * (128 + 512):,} trainable' in out


def test_given_patterns_on_a_stock_config(tool, capsys):
    cfg = osp.join(CONFIGS, 'shapes', 'detr_r18-tiny_5e_shapes.py')
    assert tool.main([
        cfg, '--targets', r'decoder\.layers\.\d+\.ffn\.layers\.1',
        '--group-pattern', r'(decoder)\..*'
    ]) == 0
    out = capsys.readouterr().out
    assert 'model: DETR' in out
    assert marked(out) == [f'decoder.layers.{i}.ffn.layers.1'
                           for i in range(3)]
    assert '1 groups' in out and f'{3 * 8 * (512 + 128):,} params' in out


def test_patterns_that_match_nothing(tool, capsys):
    assert tool.main([TASK_CFGS[0], '--targets', r'neck\..*']) == 1
    err = capsys.readouterr().err
    assert 'match no nn.Linear' in err
    assert 'encoder.layers.0.ffn.layers.1' in err  # lists what exists


def test_group_pattern_that_misses_a_target(tool, capsys):
    assert tool.main([TASK_CFGS[0], '--group-pattern',
                      r'(encoder\.layers\.\d+)\..*']) == 1
    err = capsys.readouterr().err
    assert 'decoder.layers.0.ffn.layers.0.0 matches no group' in err
