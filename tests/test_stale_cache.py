"""Nothing stale: the cached "before" metrics of a task are reused only for
the same input checkpoint (bytes) and evaluation settings, also across a
resume; a sequence refuses a base checkpoint that changed under its
started tasks. ForgetTaskHook runs on a fake runner here (fast)."""
import json
import os.path as osp
import shutil
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MessageHub

from gslora_det.before_cache import (CACHE_NAME, cache_decision,
                                     eval_fingerprint)
from gslora_det.checkpoint import save_checkpoint_atomic, sha256_file
from gslora_det.hooks import EvalProgressHook, ForgetTaskHook
from gslora_det.lora import LoRALinear

def make_cfg(root, load_from, forget=('a',)):
    return Config(dict(
        load_from=load_from,
        forget_task=dict(index=1, forget_classes=list(forget),
                         previously_forgotten=[]),
        model=dict(test_cfg=dict(max_per_img=100)),
        val_dataloader=dict(batch_size=2, num_workers=0, dataset=dict(
            type='CocoDataset', data_root=str(root), ann_file='ann.json',
            pipeline=[dict(type='LoadImageFromFile')])),
        val_evaluator=dict(type='ForgettingMetric',
                           ann_file=str(root / 'ann.json'),
                           forget_classes=list(forget))))


class Metric:
    def __init__(self, forget):
        self.forget = list(forget)

    def class_sets(self):
        return dict(forget=self.forget, old=[],
                    retain=[c for c in 'abc' if c not in self.forget])


class ValLoop:
    """Runs the progress hook over 2 batches of 4 images; remembers the
    weights it evaluated."""

    def __init__(self, runner):
        self.runner, self.seen = runner, []
        self.dataloader = type('Loader', (list,), {})([0, 1])
        self.dataloader.dataset = [0] * 4

    def run(self):
        runner = self.runner
        self.seen.append({k: v.clone()
                          for k, v in runner.model.state_dict().items()})
        runner.progress.before_val_epoch(runner)
        for i in range(len(self.dataloader)):
            runner.progress.after_val_iter(runner, i)
        return {'forgetting/mAP_forget': 0.6, 'forgetting/mAP_retain': 0.7}


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(LoRALinear(4, 3, rank=2))


def make_runner(root, load_from, it=0, forget=('a',), hub=None, model=None):
    lines = []
    runner = SimpleNamespace(
        work_dir=str(root / 'work'), cfg=make_cfg(root, load_from, forget),
        iter=it, model=model or make_model(),
        logger=SimpleNamespace(lines=lines, info=lines.append,
                               warning=lines.append),
        message_hub=hub or MessageHub(f'stale_{id(root)}_{load_from}_{it}'),
        val_evaluator=SimpleNamespace(metrics=[Metric(forget)]),
        progress=EvalProgressHook())
    runner.val_loop = ValLoop(runner)
    return runner


@pytest.fixture
def ckpts(tmp_path):
    """Checkpoint X, a same-bytes copy of X, and Y (same weights, other
    bytes); the annotation file of the fake val set."""
    (tmp_path / 'work').mkdir()
    (tmp_path / 'ann.json').write_text('{"images": []}')
    state = {k: v for k, v in make_model().state_dict().items()
             if 'lora_' not in k}
    x, y, copy = (str(tmp_path / n) for n in ('x.pth', 'y.pth', 'x2.pth'))
    for path in (x, y):  # same weights, other meta: other bytes
        save_checkpoint_atomic(dict(meta=dict(name=path), state_dict=state),
                               path)
    shutil.copy(x, copy)
    return SimpleNamespace(x=x, x_copy=copy, y=y, state=state)


def test_cache_decision():
    fp, sha = 'f' * 64, 'a' * 64
    cached = dict(input_checkpoint_sha256=sha, eval_fingerprint=fp)
    assert cache_decision(cached, sha, fp)[0]
    assert not cache_decision(None, sha, fp)[0]
    use, why = cache_decision(cached, 'b' * 64, fp)
    assert not use and 'another input checkpoint' in why
    use, why = cache_decision(cached, sha, 'e' * 64)
    assert not use and 'evaluation settings changed' in why
    use, why = cache_decision(dict(input_checkpoint_sha256=sha), sha, fp)
    assert not use and 'older version' in why
    assert not cache_decision(cached, None, fp)[0]
    # no file to hash (a URL): by name, and only where asked (a resume)
    url = dict(input_checkpoint='https://x/y.pth', eval_fingerprint=fp)
    assert not cache_decision(url, None, fp)[0]
    assert cache_decision(url, None, fp, by_name='https://x/y.pth')[0]
    assert not cache_decision(url, None, fp, by_name='https://x/z.pth')[0]


def test_fingerprint_follows_the_evaluation(tmp_path):
    (tmp_path / 'ann.json').write_text('{"images": []}')

    def fingerprint(cfg, forget='a'):
        return eval_fingerprint(cfg, Metric(forget).class_sets())

    base = fingerprint(make_cfg(tmp_path, 'x'))
    assert fingerprint(make_cfg(tmp_path, 'other')) == base
    cfg = make_cfg(tmp_path, 'x')
    cfg.val_dataloader.num_workers = 4  # loader mechanics do not count
    assert fingerprint(cfg) == base
    assert fingerprint(make_cfg(tmp_path, 'x', forget=('b',)), 'b') != base
    # the metric's lists alone (filled at loop build, not in cfg) count
    assert fingerprint(make_cfg(tmp_path, 'x'), 'b') != base
    cfg.val_dataloader.dataset.pipeline.append(dict(type='Resize'))
    assert fingerprint(cfg) != base
    (tmp_path / 'ann.json').write_text('{"images": [1]}')  # new val data
    assert fingerprint(make_cfg(tmp_path, 'x')) != base


def decide(root, load_from, **kwargs):
    """ForgetTaskHook.before_train on a fake runner: (runner, hook,
    before_source, before_reason)."""
    runner, hook = make_runner(root, load_from, **kwargs), ForgetTaskHook()
    hook.before_train(runner)
    return (runner, hook, hook._source['before_source'],
            hook._source['before_reason'])


def test_fresh_runs_reuse_only_a_matching_cache(tmp_path, ckpts):
    runner, hook, source, _ = decide(tmp_path, ckpts.x)
    assert source == 'computed' and len(runner.val_loop.seen) == 1
    assert hook._before['mAP_forget'] == 0.6
    # the progress line says which checkpoint "before" evaluates
    assert runner.logger.lines[1].startswith(
        f"Evaluating the task's input checkpoint {ckpts.x} (sha256 ")
    assert '4 images in 2 batches' in runner.logger.lines[1]
    with open(osp.join(runner.work_dir, CACHE_NAME)) as f:
        cache = json.load(f)
    assert cache['input_checkpoint'] == ckpts.x and cache['eval_fingerprint']

    # same bytes (another path): reused
    runner, _, source, _ = decide(tmp_path, ckpts.x_copy)
    assert source == 'cached' and not runner.val_loop.seen
    # checkpoint Y (other bytes): recomputed, and the report says why
    runner, _, source, why = decide(tmp_path, ckpts.y)
    assert source == 'computed' and 'another input checkpoint' in why
    assert len(runner.val_loop.seen) == 1
    # Y again but other class lists: recomputed
    _, _, source, why = decide(tmp_path, ckpts.y, forget=('b',))
    assert source == 'computed' and 'evaluation settings' in why


def restored_hub(hub, name):
    """The message hub as a resumed run gets it (weights-only load)."""
    import io
    buffer = io.BytesIO()
    torch.save(hub.state_dict(), buffer)
    buffer.seek(0)
    new = MessageHub(name)
    new.load_state_dict(torch.load(buffer, weights_only=True))
    return new


def test_resume_uses_the_recorded_input(tmp_path, ckpts):
    runner, _, _, _ = decide(tmp_path, ckpts.x)
    model, hub = runner.model, runner.message_hub
    with torch.no_grad():  # "training"
        model[0].weight.add_(1.0)
        model[0].lora_B.fill_(0.5)
    trained = {k: v.clone() for k, v in model.state_dict().items()}

    def resume(forget='a'):  # load_from names the resumed checkpoint
        return decide(tmp_path, 'work/iter_2.pth', it=2, forget=(forget,),
                      hub=restored_hub(hub, f'resumed_{forget}'),
                      model=model)

    _, hook, source, _ = resume()
    assert source == 'cached' and hook._before['input_checkpoint'] == ckpts.x
    # other class lists: recomputed on the input's weights
    runner, _, source, _ = resume('b')
    seen = runner.val_loop.seen[0]
    assert source == 'computed' and 'weights reloaded' in \
        runner.logger.lines[1]
    assert torch.equal(seen['0.weight'], ckpts.state['0.weight'])
    assert not seen['0.lora_B'].any()  # LoRA off for "before"
    for key, value in model.state_dict().items():  # and back after it
        assert torch.equal(value, trained[key]), key
    # ... but never on an input that changed since the task started
    save_checkpoint_atomic(dict(meta={}, state_dict={}), ckpts.x)
    with pytest.raises(RuntimeError, match='changed since the task started'):
        resume('c')


# ----------------------------------------------------------- the sequence
def test_sequence_refuses_a_changed_base(tmp_path, ckpts):
    from gslora_det.sequence import SequenceError, run_sequence
    script, task = tmp_path / 'fake_train.py', tmp_path / 'task1.py'
    script.write_text(  # task 1 begins (a file in its folder) and fails
        'import os, sys\nwork = sys.argv[sys.argv.index("--work-dir") + 1]\n'
        'os.makedirs(work)\nopen(os.path.join(work, "log"), "w")\n'
        'sys.exit(3)\n')
    task.write_text('x = 1\n')
    base, run = str(tmp_path / 'base.pth'), str(tmp_path / 'run')
    shutil.copy(ckpts.x, base)

    def start(base_path, fails='task 1 .* failed', **kwargs):
        with pytest.raises(SequenceError, match=fails) as err:
            run_sequence([str(task)], base_path, run, python=sys.executable,
                         train_script=str(script), **kwargs)
        return str(err.value)

    def recorded():
        with open(osp.join(run, 'sequence.json')) as f:
            return json.load(f)['base_checkpoint_sha256']

    start(base)
    assert recorded() == sha256_file(base)
    start(ckpts.x_copy)  # the same bytes under another path: the same base
    shutil.copy(ckpts.y, base)  # other bytes under the same path: refused
    message = start(base, fails='not the one this run started from')
    assert '--work-dir' in message and '--overwrite' in message
    start(base, overwrite=True)  # starts anew from the new base
    assert recorded() == sha256_file(base)


def test_sequence_checks_a_run_of_an_older_version(tmp_path, ckpts):
    """sequence.json without the hash: task 1's recorded input decides."""
    from gslora_det.sequence import SequenceError, _check_run_dir
    run = tmp_path / 'run'
    (run / 'task_1').mkdir(parents=True)
    spec = dict(tasks=['t1.py'], base_checkpoint='b.pth', cfg_options=[])
    (run / 'sequence.json').write_text(json.dumps(spec))
    (run / 'task_1' / CACHE_NAME).write_text(json.dumps(
        dict(input_checkpoint_sha256=sha256_file(ckpts.x))))
    with pytest.raises(SequenceError, match='not the one'):
        _check_run_dir(str(run), dict(spec, base_checkpoint_sha256=sha256_file(
            ckpts.y)), overwrite=False)
    _check_run_dir(str(run), dict(spec, base_checkpoint_sha256=sha256_file(
        ckpts.x)), overwrite=False)
    assert 'base_checkpoint_sha256' in (run / 'sequence.json').read_text()


# ------------------------------------------------------- one real task run
@pytest.mark.slow
def test_real_task_resume_keeps_the_recorded_input(workspace, base_checkpoint,
                                                   tmp_path):
    """tools/train.py: a task from the base, then resumed from its last
    checkpoint (so load_from names that checkpoint): the resumed run knows
    the task's input from the checkpoint and reuses the cache."""
    from conftest import TASK_CFGS, TINY_TASK, run_tool
    cfg, work = tmp_path / 'task1_progress.py', str(tmp_path / 'task')
    cfg.write_text(f'_base_ = [{TASK_CFGS[0]!r}]\ncustom_hooks = ['
                   "dict(type='ForgetTaskHook'), "
                   "dict(type='EvalProgressHook')]\n")
    options = [o for o in TINY_TASK if not o.startswith('train_cfg.')] + [
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2']

    def train(*args):
        proc = run_tool('train.py', str(cfg), '--work-dir', work, *args,
                        cwd=workspace)
        with open(osp.join(work, 'forget_report.json')) as f:
            return proc.stdout + proc.stderr, json.load(f)

    log, report = train('--cfg-options', f'load_from={base_checkpoint}',
                        *options)
    assert ("Evaluating the task's input checkpoint "
            f'{base_checkpoint} (sha256 ') in log
    assert 'Evaluation: 1/1 batches (100 %)' in log
    assert 'Evaluating the model after forgetting (LoRA, before merge), ' \
        'iteration 2: 16 images' in log
    assert report['before_source'] == 'computed'
    assert report['input_checkpoint_sha256'] == sha256_file(base_checkpoint)

    _, resumed = train('--resume', osp.join(work, 'iter_2.pth'),
                       '--cfg-options', *options)
    assert resumed['before_source'] == 'cached', resumed['before_reason']
    for key in ('input_checkpoint_sha256', 'mAP_forget_before'):
        assert resumed[key] == report[key], key
