"""Atomic writes: a failed write leaves the old file and no temp file."""
import os

import pytest

from gslora_det.io_utils import atomic_path, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / 'out' / 'report.json'
    atomic_write_text(str(target), 'first')
    atomic_write_text(str(target), 'second')
    assert target.read_text() == 'second'
    assert os.listdir(target.parent) == ['report.json']
    mode = target.stat().st_mode & 0o777
    assert mode & 0o644 == 0o644  # readable like a normal output


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / 'merged.pth'
    target.write_text('good')
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            with open(tmp, 'w') as f:
                f.write('half')
            raise RuntimeError('killed while saving')
    assert target.read_text() == 'good'
    assert os.listdir(tmp_path) == ['merged.pth']
