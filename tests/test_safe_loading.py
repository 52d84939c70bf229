"""Untrusted files: a checkpoint that needs code to unpickle is refused and
its payload never runs; the checkpoints users have load weights-only: a
stock mmdet training run's (made without gslora_det), a model-zoo file as
publish_model.py writes it, a bare state dict."""
import codecs
import os
import os.path as osp
import pickle
import struct
import zipfile
from pickletools import genops

import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

import gslora_det  # noqa: F401  (registers the allow-list)
from gslora_det.checkpoint import (history_buffer_getattr,
                                   load_checkpoint_safely)


class Payload:
    """Unpickling this calls os.system: the classic malicious pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture
def malicious(tmp_path):
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(2)},
                'extra': Payload(str(marker))}, str(path))
    return str(path), marker


def test_gslora_loader_refuses_and_never_runs_the_payload(malicious):
    path, marker = malicious
    with pytest.raises(RuntimeError, match='weights-only unpickler.*never '
                       'executed'):
        load_checkpoint_safely(path)
    assert not marker.exists()


def test_mmengine_loading_path_refuses_too(malicious):
    """What the Runner uses for `load_from` / `--resume`."""
    path, marker = malicious
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(path, map_location='cpu')
    assert not marker.exists()


def test_raw_pickle_file_is_refused(tmp_path):
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'evil.pkl'
    with open(path, 'wb') as f:
        pickle.dump(Payload(str(marker)), f)
    with pytest.raises(RuntimeError, match='refused'):
        load_checkpoint_safely(str(path))
    assert not marker.exists()


def test_mmengine_checkpoint_contents_load_weights_only(tmp_path):
    """HistoryBuffers and numpy values, as in a real mmengine checkpoint."""
    import numpy as np
    hub = MessageHub.get_instance('safe_loading_test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_info('iter', 7)
    path = str(tmp_path / 'ckpt.pth')
    torch.save({'meta': {'seed': np.int64(3), 'arr': np.arange(3)},
                'message_hub': hub.state_dict(),
                'state_dict': {'w': torch.ones(2)}}, path)
    ckpt = load_checkpoint_safely(path)
    buffer = ckpt['message_hub']['log_scalars']['train/loss']
    assert buffer.current() == 1.5 and buffer.statistics('mean') == 1.5
    assert ckpt['meta']['seed'] == 3


def test_numpy_1_written_checkpoint_loads(tmp_path):
    """numpy 1.x pickles arrays and scalars as numpy.core.multiarray.*
    (numpy 2.x: numpy._core); mmcv 2.1 setups often still run numpy 1."""
    import numpy as np
    hub = MessageHub.get_instance('numpy1_test')
    hub.update_scalar('train/loss', np.float64(0.5))
    path = str(tmp_path / 'np1.pth')
    torch.save({'meta': {'seed': np.int64(3), 'arr': np.arange(3)},
                'message_hub': hub.state_dict()}, path,
               _use_new_zipfile_serialization=False)
    with open(path, 'rb') as f:
        data = f.read()
    assert b'numpy._core.multiarray\n' in data
    with open(path, 'wb') as f:  # GLOBAL names end at a newline: any length
        f.write(data.replace(b'numpy._core.multiarray\n',
                             b'numpy.core.multiarray\n'))
    ckpt = load_checkpoint_safely(path)
    assert ckpt['meta']['arr'].tolist() == [0, 1, 2]
    assert ckpt['message_hub']['log_scalars']['train/loss'].current() == 0.5


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        load_checkpoint_safely(osp.join(str(tmp_path), 'nope.pth'))


def test_no_global_weights_only_switch_off():
    """Nothing in the package or tools turns weights-only loading off."""
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    offenders = []
    for folder in ('gslora_det', 'tools', 'benchmarks', 'tests'):
        for dirpath, _, files in os.walk(osp.join(root, folder)):
            for name in files:
                if not name.endswith('.py'):
                    continue
                with open(osp.join(dirpath, name)) as f:
                    text = f.read()
                needle = 'weights_only=' + 'False'
                if needle in text or 'TORCH_FORCE_' + 'NO_WEIGHTS_ONLY' \
                        in text:
                    offenders.append(osp.join(folder, name))
    assert not offenders


# --- getattr: only HistoryBuffer's statistics, never a general lookup ---

def _legacy_torch_file(path, payload):
    """A torch file in the legacy format (as publish_model.py writes) whose
    main pickle is ``payload``."""
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION
    info = dict(protocol_version=PROTOCOL_VERSION, little_endian=True,
                type_sizes=dict(short=2, int=4, long=4))
    with open(path, 'wb') as f:
        for header in (MAGIC_NUMBER, PROTOCOL_VERSION, info):
            pickle.dump(header, f, protocol=2)
        f.write(payload)


def _text(s):
    return pickle.BINUNICODE + struct.pack('<I', len(s)) + s.encode()


def test_getattr_os_system_pickle_is_refused_and_never_runs(tmp_path):
    """getattr(posixpath.os, 'system')('touch PWNED'), opcode by opcode."""
    marker = tmp_path / 'PWNED'
    payload = (b'\x80\x02' + pickle.GLOBAL + b'__builtin__\ngetattr\n' +
               pickle.GLOBAL + b'posixpath\nos\n' + _text('system') +
               pickle.TUPLE2 + pickle.REDUCE + _text(f'touch {marker}') +
               pickle.TUPLE1 + pickle.REDUCE + pickle.STOP)
    pickle.loads(payload)  # the payload is real: plain pickle runs it
    assert marker.exists()
    marker.unlink()
    path = str(tmp_path / 'evil.pth')
    _legacy_torch_file(path, payload)
    with pytest.raises(RuntimeError, match='refused'):
        load_checkpoint_safely(path)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(path, map_location='cpu')
    assert not marker.exists()


class _Lookup:
    """Pickles as ``getattr(obj, name)``, as protocol 2 pickles methods."""

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return (getattr, (self.obj, self.name))


@pytest.mark.parametrize('obj,name', [
    (HistoryBuffer, '__init__'), (HistoryBuffer, 'register_statistics'),
    (codecs.encode, '__self__'), (torch.Tensor, 'new_tensor')])
def test_other_getattr_lookups_are_refused(tmp_path, obj, name):
    path = str(tmp_path / 'lookup.pth')
    torch.save({'state_dict': {}, 'x': _Lookup(obj, name)}, path)
    with pytest.raises(RuntimeError, match=r'refused getattr\(.*' + name):
        load_checkpoint_safely(path)
    with pytest.raises(pickle.UnpicklingError, match='refused getattr'):
        _load_checkpoint(path, map_location='cpu')


def test_narrow_getattr_answers_only_the_four_statistics():
    for name in ('min', 'max', 'current', 'mean'):
        assert history_buffer_getattr(HistoryBuffer, name) is \
            getattr(HistoryBuffer, name)
    for obj, name in ((HistoryBuffer, 'update'), (os, 'system'),
                      (HistoryBuffer(), 'min')):
        with pytest.raises(pickle.UnpicklingError, match='refused getattr'):
            history_buffer_getattr(obj, name)


def weighted_mean(self, window_size=None):
    return self.mean(window_size)


def test_custom_statistics_method_is_refused_clearly(tmp_path):
    """mmengine pickles custom statistics (register_statistics) into every
    log buffer; such a checkpoint is refused, naming the function."""
    HistoryBuffer.register_statistics(weighted_mean)
    try:
        hub = MessageHub.get_instance('custom_statistics_test')
        hub.update_scalar('train/loss', 1.0)
        path = str(tmp_path / 'custom.pth')
        torch.save({'message_hub': hub.state_dict()}, path)
    finally:  # the registry is class-wide: later saves must not carry it
        HistoryBuffer._statistics_methods.pop('weighted_mean')
    with pytest.raises(RuntimeError, match=r'needs the global \S*'
                       r'weighted_mean.*never executed'):
        load_checkpoint_safely(path)


# --- the checkpoints users have ---

@pytest.mark.parametrize('legacy', [False, True])
def test_bare_state_dict_loads(tmp_path, legacy):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3),
                                torch.nn.BatchNorm2d(4))
    path = str(tmp_path / 'weights.pth')
    torch.save(model.state_dict(), path,
               _use_new_zipfile_serialization=not legacy)
    for ckpt in (load_checkpoint_safely(path),
                 _load_checkpoint(path, map_location='cpu')):
        model.load_state_dict(ckpt)


def test_zoo_checkpoint_loads(zoo_checkpoint):
    """mmdet's publish_model.py output (meta + state_dict, legacy format)
    of the R50 Deformable DETR stand-in."""
    for ckpt in (load_checkpoint_safely(zoo_checkpoint),
                 _load_checkpoint(zoo_checkpoint, map_location='cpu')):
        assert set(ckpt) == {'meta', 'state_dict'}
        assert len(ckpt['meta']['dataset_meta']['classes']) == 80


@pytest.mark.slow
def test_stock_mmdet_checkpoint_needs_only_the_narrow_getattr(
        stock_mmdet_checkpoint):
    with zipfile.ZipFile(stock_mmdet_checkpoint) as z:
        pkl = z.read(next(n for n in z.namelist()
                          if n.endswith('/data.pkl')))
    found = {arg for op, arg, _ in genops(pkl) if op.name == 'GLOBAL'}
    assert {'__builtin__ getattr',
            'mmengine.logging.history_buffer HistoryBuffer'} <= found
    entry = (history_buffer_getattr, 'builtins.getattr')
    saved = torch.serialization.get_safe_globals()
    assert entry in saved
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals([g for g in saved if g != entry])
    try:
        with pytest.raises(pickle.UnpicklingError, match='GLOBAL getattr'):
            torch.load(stock_mmdet_checkpoint, weights_only=True)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


@pytest.mark.slow
def test_stock_mmdet_checkpoint_loads_both_ways(stock_mmdet_checkpoint):
    for ckpt in (load_checkpoint_safely(stock_mmdet_checkpoint),
                 _load_checkpoint(stock_mmdet_checkpoint, map_location='cpu')):
        assert {'meta', 'state_dict', 'message_hub', 'optimizer',
                'param_schedulers'} <= set(ckpt)
        loss = ckpt['message_hub']['log_scalars']['train/loss']
        assert loss.statistics('mean') == loss.mean()
        assert ckpt['meta']['epoch'] == 1 and ckpt['meta']['iter'] == 4
