"""``--cfg-options`` of the tools that forward it to child runs: parsed by
mmengine's DictAction up front, forwarded as the strings given."""
import argparse
import os.path as osp
import subprocess
import sys

import pytest

from gslora_det.cli_options import add_cfg_options, parse_cfg_options

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_parsed_as_dict_action_and_kept_as_strings():
    parser = argparse.ArgumentParser()
    add_cfg_options(parser)
    add_cfg_options(parser, '--oracle-cfg-options')
    args = parser.parse_args([
        '--cfg-options', 'model.lora_cfg.rank=4', 'a.b=[1,2]',
        'forget_task.forget_classes=[x,z]', '--cfg-options', 'c=(1,2)'])
    assert args.cfg_options == ['model.lora_cfg.rank=4', 'a.b=[1,2]',
                                'forget_task.forget_classes=[x,z]',
                                'c=(1,2)']
    assert args.oracle_cfg_options == []
    assert parse_cfg_options(args.cfg_options) == {
        'model.lora_cfg.rank': 4, 'a.b': [1, 2],
        'forget_task.forget_classes': ['x', 'z'], 'c': (1, 2)}


@pytest.mark.parametrize('bad', ['rank', '=4'])
def test_malformed_option_is_rejected_with_the_expected_form(bad):
    with pytest.raises(ValueError, match='is not key=value'):
        parse_cfg_options([bad])


@pytest.mark.parametrize('script', ['tools/forget_sequence.py',
                                    'benchmarks/forgetting_bar.py'])
def test_tools_reject_a_malformed_option_before_running(script, tmp_path):
    extra = (['t.py', '--base-checkpoint', 'b.pth', '--work-dir',
              str(tmp_path)] if 'forget_sequence' in script else
             ['--work-dir', str(tmp_path)])
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, script), *extra, '--cfg-options',
         'train_cfg.max_iters'], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "'train_cfg.max_iters' is not key=value" in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing ran
