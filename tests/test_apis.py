"""gslora_det.apis: forgetting in-process, adapters on models, and the
README example of the package docstring, run as written."""
import copy
import glob
import os.path as osp
import textwrap

import pytest
import torch

from conftest import PRETRAIN_CFG, REPO, TASK_CFGS, TINY_TASK
from test_adapter_folder import _close, task  # noqa: F401  (a fixture)

FIRST = ['blue_triangle', 'orange_star']
SECOND = ['green_square', 'cyan_ring']


def readme_example() -> str:
    """The code block of ``gslora_det.apis.__doc__``."""
    import gslora_det.apis
    lines = gslora_det.apis.__doc__.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith('::'))
    block = []
    for line in lines[start + 1:]:
        if line and not line.startswith(' '):
            break
        block.append(line)
    return textwrap.dedent('\n'.join(block)).strip() + '\n'


def build(config, **model_overrides):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    model_cfg = copy.deepcopy(Config.fromfile(config).model)
    model_cfg.update(model_overrides)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(model_cfg)


def test_readme_example_is_short_python():
    code = readme_example()
    compile(code, 'example', 'exec')
    assert 10 <= len([line for line in code.splitlines() if line]) <= 15
    assert 'from gslora_det.apis import forget_sequence, merge_adapter' in \
        code and 'DetInferencer(' in code


@pytest.mark.parametrize('stock', [False, True])
def test_add_adapter_gives_the_merged_model(task, stock):  # noqa: F811
    """On a GS-LoRA model (LoRA there, weights loaded) and on a stock
    DeformableDETR (LoRA put on first): base + adapter = merged."""
    from gslora_det.apis import add_adapter
    from gslora_det.inject import merged_state_dict
    model = build(PRETRAIN_CFG if stock else TASK_CFGS[0])
    model.load_state_dict(task['base'], strict=False)
    assert add_adapter(model, task['folder']) is model
    _close(merged_state_dict(model), task['merged'])


def test_add_adapter_checks_rank(task):  # noqa: F811
    from gslora_det.adapter import AdapterError
    from gslora_det.apis import add_adapter
    model = build(TASK_CFGS[0], lora_cfg=dict(rank=4, alpha=0.5))
    with pytest.raises(AdapterError, match='rank 4.*rank 8'):
        add_adapter(model, task['folder'])


def test_task_config(workspace, task, monkeypatch):  # noqa: F811
    """What forget() hands the Runner: the task, unique names."""
    from gslora_det.apis.forgetting import task_config
    from gslora_det.config_checks import ConfigError
    monkeypatch.chdir(workspace)
    base = str(task['root'] / 'base.pth')
    cfgs = [task_config(TASK_CFGS[0], base, SECOND, str(workspace / 'w'),
                        previously_forgotten=FIRST, cfg_options=options)
            for options in (['train_cfg.max_iters=4'],
                            {'train_cfg.max_iters': 4})]
    for cfg in cfgs:
        assert cfg.forget_task == dict(index=2, forget_classes=SECOND,
                                       previously_forgotten=FIRST)
        assert cfg.load_from == base and cfg.train_cfg.max_iters == 4
        assert cfg.visualizer.name == cfg.experiment_name
    assert cfgs[0].experiment_name != cfgs[1].experiment_name
    with pytest.raises(ConfigError, match='not a forgetting task config'):
        task_config(PRETRAIN_CFG, base, SECOND, str(workspace / 'w'))


def _log_text(work_dir):
    logs = glob.glob(osp.join(work_dir, '*', '*.log'))
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        return f.read()


@pytest.mark.slow
def test_two_forget_calls_share_no_logger(workspace, base_checkpoint,
                                          tmp_path, monkeypatch):
    """Two tasks of one config, started in the "same second" (the
    timestamp mmengine names instances by is frozen): each has its own
    logger, visualizer and log files."""
    from mmengine.logging import MMLogger
    from mmengine.runner import Runner
    from mmengine.visualization import Visualizer
    from gslora_det.apis import forget, merge_adapter
    from gslora_det.checkpoint import load_checkpoint_safely
    setup_env = Runner.setup_env

    def frozen(self, env_cfg):
        setup_env(self, env_cfg)
        self._timestamp = '20000101_000000'

    monkeypatch.setattr(Runner, 'setup_env', frozen)
    monkeypatch.chdir(workspace)
    work = [str(tmp_path / 'one'), str(tmp_path / 'two')]
    loggers, visualizers = [], []
    for k, (classes, old, ckpt) in enumerate(
            [(FIRST, [], base_checkpoint),
             (SECOND, FIRST, osp.join(work[0], 'merged.pth'))]):
        known = (set(MMLogger._instance_dict), set(Visualizer._instance_dict))
        report = forget(TASK_CFGS[0], ckpt, classes, work[k],
                        previously_forgotten=old, cfg_options=TINY_TASK)
        assert report['task'] == k + 1 and report['forget_classes'] == classes
        # (mmengine's root logger 'mmengine' may appear on first use)
        new = set(MMLogger._instance_dict) - known[0] - {'mmengine'}
        assert len(new) == 1
        loggers.append(MMLogger._instance_dict[new.pop()])
        new = set(Visualizer._instance_dict) - known[1]
        assert len(new) == 1
        visualizers.append(Visualizer._instance_dict[new.pop()])
    assert loggers[0] is not loggers[1]
    assert visualizers[0] is not visualizers[1]
    first, second = _log_text(work[0]), _log_text(work[1])
    assert 'forgetting task 1' in first and 'forgetting task 2' not in first
    assert 'forgetting task 2' in second and 'forgetting task 1' not in second
    for folder in work:
        assert glob.glob(osp.join(folder, '*', 'vis_data', 'scalars.json'))
    # the API's merge of task 1's adapter is task 1's merged checkpoint
    _close(merge_adapter(base_checkpoint, osp.join(work[0], 'adapter')),
           load_checkpoint_safely(osp.join(work[0], 'merged.pth'))[
               'state_dict'])


@pytest.mark.slow
def test_readme_example(workspace, base_checkpoint, tmp_path, monkeypatch,
                        capsys):
    """The docstring example as written, with the test's files put in
    (base, run dir, configs by absolute path) and tiny training."""
    from gslora_det.apis import forget_sequence
    from gslora_det.checkpoint import load_checkpoint_safely
    code = readme_example()
    run = str(tmp_path / 'api_demo')
    for old, new in [("'work_dirs/demo/base.pth'", repr(base_checkpoint)),
                     ("'work_dirs/api_demo'", repr(run)),
                     ("'configs/", repr(osp.join(REPO, 'configs'))[:-1] +
                      "/"),
                     ('base, run, config=',
                      'base, run, cfg_options=TINY_TASK, config=')]:
        assert old in code, old
        code = code.replace(old, new)
    monkeypatch.chdir(workspace)
    scope = dict(TINY_TASK=TINY_TASK)
    exec(compile(code, 'readme_example', 'exec'), scope)
    reports = scope['reports']
    assert [r['task'] for r in reports] == [1, 2]
    assert reports[1]['previously_forgotten'] == FIRST
    merged = load_checkpoint_safely(osp.join(run, 'task_1', 'merged.pth'))
    _close(scope['state'], merged['state_dict'])
    prediction = scope['result']['predictions'][0]
    assert len(prediction['labels']) == len(prediction['scores']) > 0
    assert all(0 <= label < 8 for label in prediction['labels'])
    out = capsys.readouterr().out
    assert str([round(r['h_mean'], 3) for r in reports]) in out
    assert osp.isfile(osp.join(run, 'summary.md'))
    # run again: both tasks are done, nothing is trained
    again = forget_sequence([FIRST, SECOND], base_checkpoint, run,
                            config=osp.join(REPO, 'configs', 'shapes',
                                            'gslora_deformable-detr_r18-tiny_'
                                            'task1_shapes.py'),
                            cfg_options=TINY_TASK)
    assert capsys.readouterr().out.count('done already') == 2
    assert again == reports
    assert torch.is_tensor(scope['state']['query_embedding.weight'])
