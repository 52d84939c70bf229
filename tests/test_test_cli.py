"""Tests for tools/test.py's mmdet conventions: ``--out`` (a predictions
pickle), ``--metrics-out``, ``--show-dir`` / ``--show-score-thr``; the
argument and config checks run in-process (fast), one real test pass on the
tiny shapes detector."""
import glob
import json
import os.path as osp
import re
import sys

import pytest
from mmengine.config import Config

from conftest import PRETRAIN_CFG, load_script, run_tool
from gslora_det.config_checks import ConfigError
from gslora_det.evaluation.evaluate import enable_visualization


@pytest.fixture
def tool(monkeypatch):
    """tools/test.py as a module (LOCAL_RANK kept out of this process)."""
    monkeypatch.setenv('LOCAL_RANK', '0')
    module = load_script('tools/test.py', 'test_tool')
    return module


def test_flags_parse_as_in_mmdet(tool):
    args = tool.parse_args([
        'cfg.py', 'ckpt.pth', '--out', 'preds.pkl', '--metrics-out',
        'm.json', '--show-dir', 'vis', '--show-score-thr', '0.5',
        '--work-dir', 'w', '--launcher', 'pytorch', '--cfg-options',
        'model.test_cfg.max_per_img=10', 'a=[1,2]'])
    assert (args.out, args.metrics_out, args.show_dir) == (
        'preds.pkl', 'm.json', 'vis')
    assert args.show_score_thr == 0.5 and not args.show
    assert (args.work_dir, args.launcher) == ('w', 'pytorch')
    assert args.cfg_options == {'model.test_cfg.max_per_img': 10,
                                'a': [1, 2]}
    defaults = tool.parse_args(['cfg.py', 'ckpt.pth'])
    assert defaults.out is None and defaults.metrics_out is None
    assert defaults.show_score_thr == 0.3 and defaults.wait_time == 2


@pytest.mark.parametrize('argv, message', [
    (['--out', 'metrics.json'], '--metrics-out'),
    (['--out', 'preds.txt'], '.pkl'),
    (['--metrics-out', 'metrics.pkl'], '.json'),
    (['--show-score-thr', '1.5'], r'\[0, 1\]'),
])
def test_bad_flags_are_refused(tool, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        tool.parse_args(['cfg.py', 'ckpt.pth', *argv])
    assert exc.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_enable_visualization_sets_mmdets_hook():
    cfg = Config(dict(default_hooks=dict(
        visualization=dict(type='DetVisualizationHook'))))
    enable_visualization(cfg, 'vis', score_thr=0.2)
    assert cfg.default_hooks.visualization == dict(
        type='DetVisualizationHook', draw=True, test_out_dir='vis',
        score_thr=0.2)
    enable_visualization(cfg, None, show=True, wait_time=0.5)
    vis = cfg.default_hooks.visualization
    assert vis.show and vis.wait_time == 0.5 and vis.score_thr == 0.3


@pytest.mark.parametrize('hooks', [None, dict(logger=dict(type='X')),
                                   dict(visualization=None)])
def test_enable_visualization_without_the_hook(hooks):
    cfg = Config(dict(default_hooks=hooks) if hooks is not None else {})
    with pytest.raises(ConfigError, match='DetVisualizationHook'):
        enable_visualization(cfg, 'vis')


def test_main_exits_with_the_error(tool, workspace, monkeypatch, capsys,
                                   tmp_path):
    ckpt = tmp_path / 'unused.pth'
    ckpt.write_bytes(b'')  # never loaded: the error comes first
    monkeypatch.chdir(workspace)
    monkeypatch.setattr(sys, 'argv', [
        'test.py', PRETRAIN_CFG, str(ckpt), '--show-dir', 'vis',
        '--cfg-options', 'default_hooks.visualization=None'])
    with pytest.raises(SystemExit, match='need a visualization hook'):
        tool.main()


def test_real_run_dumps_paints_and_writes_metrics(workspace,
                                                  base_checkpoint):
    import mmengine
    work = osp.join(str(workspace), 'work_dirs', 'test_cli')
    preds = osp.join(work, 'preds.pkl')
    metrics = osp.join(work, 'metrics.json')
    proc = run_tool(
        'test.py', PRETRAIN_CFG, base_checkpoint, '--work-dir', work,
        '--out', preds, '--metrics-out', metrics, '--show-dir', 'vis',
        '--show-score-thr', '0.2', '--cfg-options',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False', cwd=workspace)
    # As mmdet's hook: a relative --show-dir is <work_dir>/<timestamp>/vis.
    painted = glob.glob(osp.join(work, '*', 'vis', '*.png'))
    assert len(painted) == 16
    assert f'painted images written to {osp.dirname(painted[0])}' in \
        proc.stdout
    dumped = mmengine.load(preds)
    assert len(dumped) == 16
    assert {'img_id', 'pred_instances'} <= set(dumped[0])
    assert dumped[0]['pred_instances']['bboxes'].shape[1] == 4
    with open(metrics) as f:
        assert 0 <= json.load(f)['coco/bbox_mAP'] <= 1
