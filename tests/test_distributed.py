"""One forgetting task with 2 processes (gloo on CPU, NCCL on GPUs),
started as a user would: tools/dist_forget_sequence.sh -> the sequence
runner -> torch.distributed.run -> tools/train.py --launcher pytorch.

Checked: every output is written once, by rank 0, and loads; the merged
checkpoint is input + adapter; both ranks logged the same group-lasso
values, group norms and metrics (DDP keeps the LoRA weights in sync, the
evaluator gathers and broadcasts the metrics)."""
import glob
import json
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TASK_CFGS, TINY_TASK, run_tool

OUTPUTS = ('merged.pth', 'adapter.safetensors', 'forget_report.json',
           'manifest.json', 'per_class_ap.png', 'before_metrics.json')


# Two GPUs: NCCL, one process per GPU. Fewer: the CPU path (gloo), with the
# GPU hidden (two ranks cannot share one GPU under NCCL).
ON_GPUS = torch.cuda.device_count() >= 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def shell_env(**extra):
    env = dict(os.environ, PYTHON=sys.executable)
    env.update(extra)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    return env


@pytest.fixture(scope='module')
def dist_run(workspace, base_checkpoint):
    """Task 1 of the built-in sequence, 2 processes per task."""
    run = osp.join(str(workspace), 'work_dirs', 'dist_seq')
    # Per process: 2 retain + 2 forget images; log_level DEBUG makes
    # mmengine keep one log file per rank.
    cmd = ['bash', osp.join(REPO, 'tools', 'dist_forget_sequence.sh'), '2',
           TASK_CFGS[0], '--base-checkpoint', base_checkpoint,
           '--work-dir', run, '--cfg-options', *TINY_TASK,
           'log_level=DEBUG', 'default_hooks.logger.interval=1']
    proc = subprocess.run(cmd, cwd=workspace, capture_output=True, text=True,
                          timeout=600, env=shell_env(
                              PORT=str(free_port()),
                              **({} if ON_GPUS else
                                 {'CUDA_VISIBLE_DEVICES': ''})))
    assert proc.returncode == 0, (proc.stdout[-4000:] + proc.stderr[-4000:])
    return run


def rank_logs(folder):
    """{rank: text} of mmengine's per-rank log files."""
    logs = {}
    for path in glob.glob(osp.join(folder, '*', '*_rank*.log')):
        rank = int(re.search(r'rank(\d+)\.log$', path).group(1))
        with open(path) as f:
            logs[rank] = f.read()
    return logs


def logged(text, tag):
    """Per logged line holding ``tag``: its ``key: number`` pairs."""
    return [dict(re.findall(r'(\S+): (-?[\d.]+(?:e[-+]?\d+)?)\b', line))
            for line in text.splitlines() if tag in line]


def test_two_process_task_outputs(dist_run, base_checkpoint):
    from gslora_det.adapter import load_adapter
    from gslora_det.checkpoint import sha256_file
    from gslora_det.inject import apply_adapter
    from gslora_det.report.manifest import read_manifest
    run = dist_run
    folder = osp.join(run, 'task_1')

    # written once: no per-rank copies, no temporary files left behind
    names = os.listdir(folder)
    for name in OUTPUTS:
        assert name in names, name
    for where in (folder, run):
        leftovers = [n for n in os.listdir(where)
                     if n.endswith('.tmp') or re.search(r'rank\d', n)]
        assert not leftovers, leftovers
    assert osp.isfile(osp.join(run, 'summary.json'))

    # the files load and agree with each other
    with open(osp.join(folder, 'forget_report.json')) as f:
        report = json.load(f)
    manifest = read_manifest(osp.join(folder, 'manifest.json'))
    assert manifest['files']['merged_checkpoint']['sha256'] == sha256_file(
        osp.join(folder, 'merged.pth'))
    assert manifest['files']['adapter']['sha256'] == sha256_file(
        osp.join(folder, 'adapter.safetensors'))
    assert manifest['config']['launcher'] == 'pytorch'
    if not ON_GPUS:
        assert manifest['config']['env_cfg']['dist_cfg']['backend'] == 'gloo'
    # LoRA is injected and the rest frozen at build, before DDP wraps it
    assert report['trainable_params'] == 6 * 2 * 8 * (128 + 512)

    # merged == input + adapter
    tensors, meta = load_adapter(osp.join(folder, 'adapter.safetensors'))
    before = torch.load(base_checkpoint, weights_only=True)['state_dict']
    merged = torch.load(osp.join(folder, 'merged.pth'),
                        weights_only=True)['state_dict']
    assert set(merged) == set(before)
    rebuilt = apply_adapter(before, tensors, meta['scaling'])
    for key in merged:
        assert torch.allclose(rebuilt[key], merged[key], atol=1e-6), key
    changed = {k for k in merged if not torch.equal(before[k], merged[k])}
    assert changed and all(re.search(r'ffn\.layers\.(0\.0|1)\.weight$', k)
                           for k in changed), changed
    # and the audit tool agrees (hashes, input + adapter == merged)
    proc = run_tool('verify.py', osp.join(folder, 'merged.pth'),
                    osp.join(folder, 'manifest.json'), '--skip-eval',
                    cwd=osp.dirname(osp.dirname(run)))
    assert 'verified: task 1' in proc.stdout


def forget_gt_boxes(workspace):
    """GT boxes of task 1's classes in the whole val set."""
    with open(osp.join(str(workspace), 'data', 'shapes', 'annotations',
                       'instances_val.json')) as f:
        coco = json.load(f)
    ids = {c['id'] for c in coco['categories']
           if c['name'] in ('blue_triangle', 'orange_star')}
    return sum(a['category_id'] in ids for a in coco['annotations'])


def test_ranks_agree(dist_run, workspace):
    """Both ranks trained the same LoRA and measured the same metrics."""
    folder = osp.join(dist_run, 'task_1')
    logs = rank_logs(folder)
    assert sorted(logs) == [0, 1], sorted(logs)
    train, val = {}, {}
    for rank, text in logs.items():
        # DDP averages the gradients, so the LoRA weights (hence the group
        # norms and the group-lasso term) and grad_norm are the same on
        # every rank; the data losses are each rank's own batch.
        train[rank] = [{k: v for k, v in d.items() if k.startswith('gn.') or
                        k in ('loss_group_lasso', 'grad_norm')}
                       for d in logged(text, 'Iter(train)')]
        val[rank] = [{k: v for k, v in d.items()
                      if k.startswith('forgetting/')}
                     for d in logged(text, 'Iter(val)')]
        val[rank] = [d for d in val[rank] if d]
    assert len(train[0]) == 4, train[0]  # logger interval 1, 4 iterations
    assert all({'loss_group_lasso', 'grad_norm', 'gn.enc0', 'gn.dec2'} <=
               set(d) for d in train[0]), train[0]
    assert train[0] == train[1]
    # before and after training; gathered on rank 0, broadcast to all
    assert len(val[0]) == 2 and 'forgetting/mAP_forget' in val[0][0]
    assert val[0] == val[1]
    # ... over the whole val set, not one rank's shard of it
    assert float(val[0][1]['forgetting/residual_num_gt']) == \
        forget_gt_boxes(workspace)
    with open(osp.join(folder, 'forget_report.json')) as f:
        report = json.load(f)
    assert float(val[1][1]['forgetting/mAP_retain']) == pytest.approx(
        report['mAP_retain_after'], abs=1e-4)


def test_dist_train_sh_command(tmp_path):
    """tools/dist_train.sh hands torch.distributed.run mmdet's flags."""
    stub = tmp_path / 'python'
    stub.write_text('#!/bin/sh\necho "$@"\n')
    stub.chmod(0o755)
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), 'cfg.py', '4',
         '--work-dir', 'w'], capture_output=True, text=True,
        env=shell_env(PYTHON=str(stub), NNODES='2', NODE_RANK='1',
                      PORT='29611', MASTER_ADDR='10.0.0.1'))
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.split()
    assert args[:7] == ['-m', 'torch.distributed.run', '--nnodes=2',
                        '--node_rank=1', '--master_addr=10.0.0.1',
                        '--nproc_per_node=4', '--master_port=29611']
    assert args[7].endswith('tools/train.py')
    assert args[8:] == ['cfg.py', '--launcher', 'pytorch', '--work-dir', 'w']


def test_slurm_launch(tmp_path, monkeypatch):
    """The sequence runs each task as an srun step; train.py maps Slurm's
    variables as mmengine does."""
    from gslora_det.distributed import _set_env_from_launcher
    from gslora_det.sequence import Launch, SequenceError
    launch = Launch('slurm', srun_args='--ntasks=16 --gres=gpu:8')
    monkeypatch.setenv('PATH', str(tmp_path))  # no srun here
    with pytest.raises(SequenceError, match='needs srun on PATH'):
        launch.check()
    (tmp_path / 'srun').write_text('#!/bin/sh\n')
    (tmp_path / 'srun').chmod(0o755)
    monkeypatch.setenv('SLURM_PROCID', '3')
    with pytest.raises(SequenceError, match='start it once'):
        launch.check()
    monkeypatch.setenv('SLURM_PROCID', '0')
    launch.check()
    assert launch.command('py', 't.py') == [
        'srun', '--kill-on-bad-exit=1', '--ntasks=16', '--gres=gpu:8', 'py',
        '-u', 't.py']
    for key, value in dict(SLURM_PROCID='5', SLURM_NTASKS='16',
                           SLURM_LOCALID='1', SLURM_NODELIST='n[1-2]',
                           MASTER_ADDR='n1').items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv('MASTER_PORT', raising=False)
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'):
        monkeypatch.delenv(key, raising=False)
    _set_env_from_launcher('slurm')
    assert [os.environ[k] for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK',
                                    'MASTER_PORT')] == ['5', '16', '1',
                                                        '29500']


def test_launcher_env_errors(monkeypatch):
    """--launcher pytorch without torchrun's variables names the fix."""
    from mmengine.config import Config

    from gslora_det.distributed import LaunchError, setup_cpu_distributed
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    with pytest.raises(LaunchError, match=r'RANK, WORLD_SIZE.*torchrun'):
        setup_cpu_distributed(cfg, 'pytorch')
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None
    assert setup_cpu_distributed(Config(dict()), 'none') is False
