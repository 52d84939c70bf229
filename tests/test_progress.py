"""Progress a person sees: "task k/N" lines with elapsed time and ETA,
sequence children that keep their config and environment dumps in the log
file, tools/train.py's mmdet flags, and the installer's progress parsing."""
import glob
import os.path as osp
import shutil
import subprocess
import sys
import uuid

import pytest

from conftest import PRETRAIN_CFG, REPO, fake_sequence_inputs, load_script


def load_train_tool():
    module = load_script('tools/train.py', 'train_tool')
    return module


# ------------------------------------------------------------ LoopProgress
def test_loop_progress_lines(monkeypatch, capsys):
    from gslora_det import console
    now = [1000.0]
    monkeypatch.setattr(console.time, 'time', lambda: now[0])
    progress = console.LoopProgress(4, 'task', '[sequence]')
    assert progress.skip(1) == ('[sequence] task 1/4 done already, skipping '
                                '(elapsed 0:00:00, ETA unknown)')
    assert progress.start(2, 'a.py from base.pth') == (
        '[sequence] task 2/4: a.py from base.pth (elapsed 0:00:00, ETA '
        'unknown)')
    now[0] += 90
    # 90 s a task, 2 tasks left
    assert progress.end(2) == ('[sequence] task 2/4 finished in 0:01:30 '
                               '(elapsed 0:01:30, ETA 0:03:00)')
    progress.start(3)
    now[0] += 30
    progress.end(3)  # mean 60 s, 1 left
    assert progress.start(4).endswith('(elapsed 0:02:00, ETA 0:01:00)')
    now[0] += 60
    assert progress.end(4).endswith('(elapsed 0:03:00, all 4 done)')
    assert capsys.readouterr().out.count('\n') == 7


def test_run_sequence_progress_and_quiet_children(tmp_path, monkeypatch,
                                                  capfd):
    """A fake tools/train.py: the sequence's lines and the child's flags."""
    import gslora_det.report.summary as summary
    from gslora_det.sequence import run_sequence
    monkeypatch.setattr(summary, 'write_run_summary', lambda *a, **k: None)
    script = tmp_path / 'fake_train.py'
    script.write_text(
        'import json, os, sys\n'
        'work = sys.argv[sys.argv.index("--work-dir") + 1]\n'
        'os.makedirs(work, exist_ok=True)\n'
        'open(os.path.join(work, "merged.pth"), "w").write("x")\n'
        'json.dump(dict(argv=sys.argv), open(os.path.join(work, '
        '"forget_report.json"), "w"))\n')
    tasks, base = fake_sequence_inputs(tmp_path)
    run = str(tmp_path / 'run')

    def start():
        return run_sequence(tasks, str(base), run, python=sys.executable,
                            train_script=str(script))

    reports = start()
    assert all('--quiet-config' in r['argv'] for r in reports)
    out = capfd.readouterr().out
    assert f'[sequence] task 1/2: {tasks[0]} from {base} (elapsed ' in out
    assert 'ETA unknown)' in out.splitlines()[0]
    assert '[sequence] task 1/2 finished in ' in out
    assert '[sequence] task 2/2: ' in out and 'ETA 0:00:0' in out
    assert 'all 2 done)' in out
    start()
    out = capfd.readouterr().out
    assert out.count('done already') == 2
    assert '[sequence] task 2/2 done already, skipping' in out


# --------------------------------------------- config dumps off the console
def test_dump_filter_keeps_the_log_file_complete(tmp_path, capsys):
    from mmengine.logging import MMLogger
    from gslora_det.console import quiet_console_handlers
    log_file = str(tmp_path / 'run.log')
    logger = MMLogger.get_instance(f'dumps_{uuid.uuid4().hex}',
                                   log_file=log_file)
    quiet_console_handlers(logger)
    env = '\n' + '-' * 60 + '\nSystem environment:\n    sys.platform: x'
    for message in (env, 'Config:\nmodel = dict()',
                    'Hooks will be executed in the following order:\nx',
                    'paramwise_options -- backbone.conv1.weight:lr=1e-05',
                    'Epoch(train) [1][1/12] loss: 1.0'):
        logger.info(message)
    for handler in logger.handlers:
        handler.flush()
    out = capsys.readouterr().out
    assert 'loss: 1.0' in out
    assert 'System environment' not in out and 'Config:' not in out
    assert 'Hooks will be executed' not in out and 'paramwise' not in out
    with open(log_file) as f:
        text = f.read()
    for part in ('System environment', 'Config:\nmodel', 'Hooks will be',
                 'paramwise_options', 'loss: 1.0'):
        assert part in text, part


def test_quiet_runner_dumps_to_the_log_file_only(tmp_path, capsys):
    """A real mmengine Runner: its __init__ logs the dumps."""
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from torch import nn
    from gslora_det.console import quiet_console

    class Tiny(BaseModel):

        def __init__(self):
            super().__init__()
            self.w = nn.Linear(1, 1)

        def forward(self, *args, mode='tensor', **kwargs):
            return self.w.weight

    runner_cls = quiet_console(Runner)
    assert runner_cls.__name__ == 'Runner' and issubclass(runner_cls, Runner)
    runner = runner_cls(model=Tiny(), work_dir=str(tmp_path),
                        cfg=dict(marker_setting=123),
                        experiment_name=f'quiet_{uuid.uuid4().hex}')
    runner.logger.info('after the dumps')
    out = capsys.readouterr().out
    assert 'after the dumps' in out
    assert 'System environment' not in out and 'marker_setting' not in out
    with open(runner.logger.log_file) as f:
        text = f.read()
    assert 'System environment' in text and 'marker_setting = 123' in text


# ------------------------------------------------------ tools/train.py flags
def test_train_auto_scale_lr_and_flags(tmp_path):
    train = load_train_tool()
    args = train.parse_args([PRETRAIN_CFG, '--auto-scale-lr',
                             '--quiet-config', '--cfg-options',
                             'train_dataloader.batch_size=4',
                             'optim_wrapper.optimizer.lr=0.001'])
    assert args.quiet_config and args.cfg_options[
        'optim_wrapper.optimizer.lr'] == 0.001  # DictAction parses values
    cfg = train.setup_config(args)
    assert cfg.auto_scale_lr.enable is True
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.batch_size == 4
    cfg = train.setup_config(train.parse_args([PRETRAIN_CFG]))
    assert not cfg.auto_scale_lr.get('enable', False)  # off unless asked

    plain = tmp_path / 'no_scaling.py'
    plain.write_text('model = dict(type="X")\n')
    with pytest.raises(SystemExit, match='needs `auto_scale_lr = dict'):
        train.setup_config(train.parse_args([str(plain), '--auto-scale-lr']))
    plain.write_text('auto_scale_lr = dict(enable=False)\n')
    with pytest.raises(SystemExit, match='base_batch_size'):
        train.setup_config(train.parse_args([str(plain), '--auto-scale-lr']))


# ------------------------------------------------ installer progress parsing
INSTALLER_SAMPLE = r'''
source "$1"
{ echo "Looking in indexes: https://pypi.org/simple"
  echo "Collecting torch==2.14.1"
  echo "  Downloading torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl (873.2 MB)"
  for i in 0 50000000 100000000 450000000 873200000 873200000; do
      echo "Progress $i of 873200000"; done
  echo "Requirement already satisfied: numpy in ./venv"
  echo "  Downloading six-1.16.0-py2.py3-none-any.whl (11 kB)"
  echo "Progress 0 of 11053"; echo "Progress 11053 of 11053"
} | pip_filter
echo ---
mmcv_source_count "$2" 0; echo; mmcv_source_count "$2" 1; echo
echo ---
{ echo "running bdist_wheel"
  echo "[1/77] c++ -MMD -MF nms.o.d -c /b/mmcv/ops/csrc/pytorch/nms.cpp -o nms.o"
  echo "/b/mmcv/ops/csrc/pytorch/nms.cpp:1: warning: unused variable"
  echo "  [2/77] /usr/bin/nvcc -c /b/mmcv/ops/csrc/pytorch/cuda/nms_cuda.cu -o n.o"
  echo "/b/a.cpp:3:1: error: expected ';'"
  echo "x86_64-linux-gnu-g++ -shared nms.o -o build/lib/mmcv/_ext.so"
} | mmcv_build_progress 70
echo ---
{ echo "x86_64-linux-gnu-gcc -pthread -fPIC -c ./mmcv/ops/csrc/pytorch/nms.cpp -o b/nms.o"
  echo "gcc -c ./mmcv/ops/csrc/pytorch/cpu/nms_cpu.cpp -o b/n.o"
  echo "g++ -shared b/n.o -o _ext.so"
} | mmcv_build_progress 2
'''


@pytest.mark.skipif(not shutil.which('bash'), reason='needs bash')
def test_installer_progress_parsing(tmp_path):
    src = tmp_path / 'mmcv'
    for sub, names in (('', ['a.cpp', 'b.cpp', 'x.h']), ('cpu', ['c.cpp']),
                       ('cuda', ['d.cu', 'e.cpp'])):
        folder = src / 'mmcv' / 'ops' / 'csrc' / 'pytorch' / sub
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            (folder / name).write_text('')
    proc = subprocess.run(
        ['bash', '-c', INSTALLER_SAMPLE, 'sample',
         osp.join(REPO, 'tools', 'install_progress.sh'), str(src)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    pip, count, ninja, plain = proc.stdout.split('---\n')
    assert pip.splitlines() == [
        'Collecting torch==2.14.1',
        '  Downloading torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl '
        '(873.2 MB)',
        '    downloaded  10 % of 873 MB', '    downloaded  50 % of 873 MB',
        '    downloaded 100 % of 873 MB',
        '  Downloading six-1.16.0-py2.py3-none-any.whl (11 kB)']
    assert count.split() == ['3', '5']
    lines = ninja.splitlines()
    assert len(lines) == 3 and 'error: expected' in lines[2]
    assert lines[0].endswith('mmcv build: 1/77 sources compiled (1 %), '
                             'ETA unknown')
    assert 'mmcv build: 2/77 sources compiled (2 %)' in lines[1]
    assert [line.split('] ')[1] for line in plain.splitlines()] == [
        'mmcv build: 1/2 sources compiled (50 %), ETA unknown',
        'mmcv build: 2/2 sources compiled (100 %), linking next']


# ------------------------------------------------- a real sequence's output
@pytest.mark.slow
def test_sequence_children_keep_dumps_in_their_logs(sequence_run):
    run, stdout, _ = sequence_run
    assert '[sequence] task 1/2: ' in stdout and 'ETA unknown' in stdout
    assert '[sequence] task 2/2 finished in ' in stdout
    for dump in ('System environment:', 'INFO - Config:', 'Hooks will be'):
        assert dump not in stdout, dump
    logs = glob.glob(osp.join(run, 'task_1', '*', '*.log'))
    assert logs, 'no log file in task_1'
    with open(logs[0]) as f:
        text = f.read()
    assert 'System environment:' in text and 'Config:' in text
