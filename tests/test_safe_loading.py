"""Untrusted files: a checkpoint that needs code to unpickle is refused and
its payload never runs; mmengine checkpoints load weights-only."""
import os
import os.path as osp
import pickle

import pytest
import torch

import gslora_det  # noqa: F401  (registers the allow-list)
from gslora_det.checkpoint import load_checkpoint_safely


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
    from mmengine.runner.checkpoint import _load_checkpoint
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
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('safe_loading_test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_info('iter', 7)
    path = str(tmp_path / 'ckpt.pth')
    torch.save({'meta': {'seed': np.int64(3), 'arr': np.arange(3)},
                'message_hub': hub.state_dict(),
                'state_dict': {'w': torch.ones(2)}}, path)
    ckpt = load_checkpoint_safely(path)
    assert ckpt['message_hub']['log_scalars']['train/loss'].current() == 1.5
    assert ckpt['meta']['seed'] == 3


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
