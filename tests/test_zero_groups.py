"""LoRA groups whose update is exactly zero: listed in the report, left out
of the adapter (and read back as zeros), skipped by every merge so that
their base weights stay bit-identical; older adapters still load, and a
stored group's missing tensor is an error that names it. Toy modules only.
"""
import copy
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn

from conftest import load_script

RANK = 2
#: Model order; the middle two end exactly zero (B only / A and B).
GROUPS = ['encoder.layers.0', 'encoder.layers.1', 'decoder.layers.0',
          'decoder.layers.1']
ON = ['encoder.layers.0', 'decoder.layers.1']
ZERO = ['encoder.layers.1', 'decoder.layers.0']
CLASSES = dict(forget=['cat'], retain=['dog'], old=[])


def _ffn_layer(dim=6, hidden=10):
    """A transformer layer as mmcv names it: ``ffn.layers.{0.0,1}``."""
    layer = nn.Module()
    layer.ffn = nn.Module()
    layer.ffn.layers = nn.ModuleList([
        nn.Sequential(nn.Linear(dim, hidden), nn.ReLU()),
        nn.Linear(hidden, dim)])
    return layer


class ToyDETR(nn.Module):
    """Two encoder and two decoder layers: four LoRA groups of 2 layers."""

    def __init__(self):
        super().__init__()
        for part in ('encoder', 'decoder'):
            module = nn.Module()
            module.layers = nn.ModuleList([_ffn_layer(), _ffn_layer()])
            setattr(self, part, module)

    def forward(self, x):
        for part in (self.encoder, self.decoder):
            for layer in part.layers:
                ffn = layer.ffn.layers
                x = x + ffn[1](ffn[0](x))
        return x


def _group(name):
    """The group of a layer, parameter or LoRA tensor name."""
    return name.split('.ffn')[0]


def _bits(t):
    """The tensor's bits: unlike ``torch.equal``, -0.0 differs from 0.0."""
    return t.contiguous().view(torch.int32)


@pytest.fixture
def toy():
    """A toy GS-LoRA model: random LoRA, the two ZERO groups switched off
    (encoder.layers.1: B = 0, A kept, as the default prox leaves it;
    decoder.layers.0: A = B = 0), base weights with -0.0 entries."""
    from gslora_det.inject import (DEFAULT_GROUP_PATTERN, DEFAULT_TARGETS,
                                   inject_lora, is_lora_param, lora_groups)
    torch.manual_seed(0)
    model = ToyDETR()
    names = inject_lora(model, DEFAULT_TARGETS, rank=RANK, alpha=1.0)
    assert len(names) == 8
    model.lora_cfg = dict(rank=RANK, alpha=1.0, targets=list(DEFAULT_TARGETS),
                          group_pattern=DEFAULT_GROUP_PATTERN)
    model.group_names = list(lora_groups(model))
    model.method = 'gslora'
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('.weight'):
                param[0, 0] = -0.0  # W + 0 would make it +0.0
            if is_lora_param(name):
                param.normal_()
                if name.startswith('encoder.layers.1.') and \
                        name.endswith('lora_B'):
                    param.zero_()
                if name.startswith('decoder.layers.0.'):
                    param.zero_()
    base = {k: v.clone() for k, v in model.state_dict().items()
            if not is_lora_param(k)}
    return model, base


def _full_merge(model, base):
    """Reference: ``W + s·BA`` for every layer, zero groups included."""
    from gslora_det.lora import lora_modules
    merged = dict(base)
    for name, module in lora_modules(model):
        merged[f'{name}.weight'] = (base[f'{name}.weight'] +
                                    module.get_delta_weight()).detach()
    return merged


def _check_merged(merged, model, base):
    """Merged = full LoRA merge within tolerance; zero groups' weights
    bit-identical to the base."""
    reference = _full_merge(model, base)
    assert set(merged) == set(reference)
    for key, value in merged.items():
        assert torch.allclose(value, reference[key], atol=1e-6), key
        if _group(key) in ZERO:
            assert torch.equal(_bits(value), _bits(base[key])), key


def _save(model, root):
    from gslora_det.adapter import save_task_adapter
    from gslora_det.inject import lora_state_dict
    return save_task_adapter(str(root), lora_state_dict(model), model,
                             CLASSES, task_index=1, base_sha256=None)


def test_zero_groups_found_and_reported(toy):
    from gslora_det.group_lasso import group_norms
    from gslora_det.inject import lora_groups, lora_state_dict
    from gslora_det.report.task_report import build_report, describe_groups
    from gslora_det.zero_groups import split_groups
    model, _ = toy
    adapter = lora_state_dict(model)
    assert split_groups(adapter, model.lora_cfg['group_pattern'],
                        model.group_names) == (ON, ZERO)
    norms = {k: v.item() for k, v in group_norms(lora_groups(model)).items()}
    assert norms['encoder.layers.1'] > 0.1  # A counts: not a zero norm
    metrics = dict(mAP_forget=0.5, mAP_retain=0.6)
    report = build_report(dict(index=1), {}, metrics, metrics, norms, 10, 20,
                          1.0, 0.01, ZERO)
    assert report['groups_on'] == ON
    assert report['groups_exactly_zero'] == ZERO
    assert list(report['group_norms']) == GROUPS  # kept as it was
    assert 'decoder.layers.0' in report['inactive_groups']
    assert 'lora_B or lora_A' in report['groups_exactly_zero_rule']
    line = describe_groups(report)
    assert line.startswith('groups on: 2/4 (encoder.layers.0, '
                           'decoder.layers.1); exactly zero: '
                           'encoder.layers.1, decoder.layers.0; ')
    # without the split: a norm of exactly 0.0 is what counts
    fallback = build_report(dict(index=1), {}, metrics, metrics,
                            dict(a=1.0, b=0.0), 10, 20, 1.0, 0.01)
    assert (fallback['groups_on'], fallback['groups_exactly_zero']) == (
        ['a'], ['b'])


def test_summary_table_shows_groups_on():
    from gslora_det.report.summary import task_table
    report = dict(task=1, forget_classes=['cat'], group_norms=dict.fromkeys(
        GROUPS, 1.0), groups_on=ON, inactive_groups=ZERO[:1])
    old = dict(report, task=2)
    del old['groups_on']  # a report from before the split
    table = task_table([report, old]).splitlines()
    assert '| groups on | groups off |' in table[0]
    assert '| 2/4 | 1/4 |' in table[2] and '| – | 1/4 |' in table[3]


def test_adapter_leaves_zero_groups_out(toy, tmp_path):
    from gslora_det.adapter import load_adapter, read_adapter
    from gslora_det.zero_groups import ZERO_GROUPS_NOTE
    model, _ = toy
    folder = _save(model, tmp_path)
    with open(osp.join(folder, 'adapter_config.json')) as f:
        config = json.load(f)
    assert config['stored_groups'] == ON
    assert config['zero_groups'] == ZERO
    assert config['zero_groups_note'] == ZERO_GROUPS_NOTE
    assert len(config['layers']) == 8  # the architecture: every layer
    for path in (osp.join(folder, 'adapter_model.safetensors'),
                 str(tmp_path / 'adapter.safetensors')):
        tensors, meta = load_adapter(path)
        assert len(tensors) == 8  # 2 groups x 2 layers x (A, B)
        assert {_group(k) for k in tensors} == set(ON)
        assert meta['zero_groups'] == ZERO
        # read back: the zero groups' layers are there, as zeros
        full, read = read_adapter(path)
        assert len(full) == 16 and read.zero_groups == ZERO
        for key, value in full.items():
            if _group(key) in ZERO:
                assert not value.any(), key
            else:
                assert torch.equal(value, tensors[key]), key


def test_merges_skip_zero_groups(toy, tmp_path):
    """Every merge path: the model's own (the hook's), a state dict (as
    tools/apply_adapter.py and verify.py), and an adapter put onto a
    fresh model."""
    from gslora_det.apis import add_adapter, merge_adapter
    from gslora_det.apis.adapters import merge_checkpoint
    from gslora_det.inject import merge_lora, merged_state_dict
    model, base = toy
    folder = _save(model, tmp_path)
    # the task hook's merge
    merged_model = copy.deepcopy(model)
    done = merge_lora(merged_model)
    assert [_group(n) for n in done['skipped']] == [
        g for g in ZERO for _ in range(2)]
    assert len(done['merged']) == 4
    _check_merged(merged_state_dict(merged_model), model, base)
    _check_merged(merged_state_dict(model), model, base)  # unmerged model
    # the adapter onto a state dict, and off again
    _check_merged(merge_adapter(base, folder), model, base)
    record = merge_checkpoint(base, folder)['meta']['gslora_adapter']
    assert (record['merged_groups'], record['skipped_zero_groups']) == (
        ON, ZERO)
    back = merge_adapter(merge_adapter(base, folder), folder, unmerge=True)
    for key in base:
        if _group(key) in ZERO:
            assert torch.equal(_bits(back[key]), _bits(base[key])), key
    # onto a fresh model without LoRA: same function as the trained one
    fresh = ToyDETR()
    fresh.load_state_dict(base)
    add_adapter(fresh, folder)
    x = torch.randn(3, 6)
    assert torch.allclose(fresh(x), model(x), atol=1e-6)


def test_cli_merges_and_reports_skipped_groups(toy, tmp_path, capsys):
    from gslora_det.checkpoint import (load_checkpoint_safely,
                                       save_checkpoint_atomic)
    model, base = toy
    folder = _save(model, tmp_path)
    save_checkpoint_atomic(dict(state_dict=base), str(tmp_path / 'b.pth'))
    tool = load_script('tools/apply_adapter.py', 'apply_adapter')
    tool.main([str(tmp_path / 'b.pth'), folder, '-o',
               str(tmp_path / 'm.pth')])
    _check_merged(load_checkpoint_safely(str(tmp_path / 'm.pth'))[
        'state_dict'], model, base)
    out = capsys.readouterr().out
    assert 'groups merged: encoder.layers.0, decoder.layers.1;' in out
    assert ('exactly zero, skipped (weights untouched): encoder.layers.1, '
            'decoder.layers.0;') in out


def test_old_adapter_with_every_group_still_loads(toy, tmp_path):
    """A folder of the previous writer: every layer stored (zero groups
    as zeros), no stored/zero keys in its config or metadata."""
    from gslora_det.adapter import (AdapterConfig, adapter_layers,
                                    read_adapter, save_adapter)
    from gslora_det.apis import add_adapter, merge_adapter
    from gslora_det.inject import lora_state_dict
    model, base = toy
    tensors = lora_state_dict(model)
    folder = tmp_path / 'old'
    folder.mkdir()
    config = AdapterConfig(rank=RANK, alpha=1.0, scaling=0.5,
                           targets=model.lora_cfg['targets'],
                           group_pattern=model.lora_cfg['group_pattern'],
                           group_names=GROUPS,
                           layers=adapter_layers(tensors)).to_dict()
    for key in ('stored_groups', 'zero_groups', 'zero_groups_note'):
        del config[key]
    (folder / 'adapter_config.json').write_text(json.dumps(config))
    meta = {k: config[k] for k in ('rank', 'alpha', 'scaling',
                                   'group_pattern', 'format_version')}
    save_adapter(tensors, str(folder / 'adapter_model.safetensors'), meta)
    read, loaded = read_adapter(str(folder))
    assert loaded.stored_groups is None and loaded.zero_groups == []
    assert set(read) == set(tensors)
    _check_merged(merge_adapter(base, str(folder)), model, base)
    fresh = ToyDETR()
    fresh.load_state_dict(base)
    add_adapter(fresh, str(folder))
    x = torch.randn(3, 6)
    assert torch.allclose(fresh(x), model(x), atol=1e-6)


def test_missing_tensor_of_a_stored_group_is_an_error(toy, tmp_path):
    from gslora_det.adapter import (AdapterError, load_adapter,
                                    read_adapter, save_adapter)
    from gslora_det.apis import merge_adapter
    model, base = toy
    folder = _save(model, tmp_path)
    weights = osp.join(folder, 'adapter_model.safetensors')
    tensors, meta = load_adapter(weights)
    key = 'decoder.layers.1.ffn.layers.1.lora_B'
    del tensors[key]
    save_adapter(tensors, weights, meta)
    with pytest.raises(AdapterError, match=rf"lack {key}.*group "
                       r"'decoder\.layers\.1' is stored"):
        read_adapter(folder)
    with pytest.raises(AdapterError, match="'decoder.layers.1'"):
        merge_adapter(base, folder)


def test_tensors_of_a_zero_group_are_an_error(toy, tmp_path):
    """The config says a group is zero, the weights hold it: refused."""
    from gslora_det.adapter import AdapterError, read_adapter, save_adapter
    from gslora_det.inject import lora_state_dict
    model, _ = toy
    folder = _save(model, tmp_path)
    weights = osp.join(folder, 'adapter_model.safetensors')
    save_adapter(lora_state_dict(model), weights, {})
    with pytest.raises(AdapterError, match='not list as stored'):
        read_adapter(folder)


def test_lora_linear_merge_skips_a_zero_update():
    from gslora_det.lora import LoRALinear
    layer = LoRALinear(4, 3, rank=2)  # B = 0 at init
    with torch.no_grad():
        layer.weight[0, 0] = -0.0
    w0 = layer.weight.detach().clone()
    assert layer.update_is_zero()
    assert layer.merge() is False and layer.merged
    assert torch.equal(_bits(layer.weight), _bits(w0))
    layer.unmerge()
    assert torch.equal(_bits(layer.weight), _bits(w0)) and not layer.merged
    with torch.no_grad():
        layer.lora_A[0, 0] = float('nan')  # 0 · NaN is NaN: not zero
    assert not layer.update_is_zero()
    with pytest.raises(ValueError, match='not finite'):
        layer.merge()
    with torch.no_grad():
        layer.lora_A.normal_()
        layer.lora_B.normal_()
    assert layer.merge() is True
