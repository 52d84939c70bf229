"""EvalProgressHook: what a pass evaluates, and its progress lines with an
ETA at least every ~10 % of the batches, with a fake runner (fast)."""
import re
from types import SimpleNamespace

import pytest
from mmengine.logging import MessageHub
from mmengine.runner import BaseLoop

from gslora_det.hooks.eval_progress_hook import (EvalProgressHook,
                                                 set_eval_subject)

PROGRESS = re.compile(r'Evaluation: (\d+)/(\d+) batches \((\d+) %\), '
                      r'elapsed \d+:\d\d:\d\d, ETA \d+:\d\d:\d\d$')


class Logger:
    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(msg)


class Loader(list):
    """``num_batches`` batches over ``num_images`` images."""

    def __init__(self, num_batches, num_images):
        super().__init__(range(num_batches))
        self.dataset = list(range(num_images))


class TrainLoop(BaseLoop):
    """Just an iteration counter (BaseLoop's init builds a dataloader)."""

    def __init__(self, it):
        self._iter = it

    @property
    def iter(self):
        return self._iter

    def run(self):
        pass


def fake_runner(num_batches, num_images, load_from=None, train_iter=None):
    loader = Loader(num_batches, num_images)
    runner = SimpleNamespace(
        logger=Logger(), cfg=dict(load_from=load_from),
        message_hub=MessageHub(f'eval_progress_{id(loader)}'),
        val_loop=SimpleNamespace(dataloader=loader),
        test_loop=SimpleNamespace(dataloader=loader))
    if train_iter is not None:
        runner._train_loop = TrainLoop(train_iter)
    return runner


def run_pass(hook, runner, mode):
    getattr(hook, f'before_{mode}_epoch')(runner)
    for i in range(len(getattr(runner, f'{mode}_loop').dataloader)):
        getattr(hook, f'after_{mode}_iter')(runner, i)
    return runner.logger.lines


@pytest.mark.parametrize('num_batches,num_images', [(7, 13), (95, 190),
                                                    (1, 1), (100, 400)])
def test_progress_lines(num_batches, num_images):
    runner = fake_runner(num_batches, num_images, 'work_dirs/t/merged.pth')
    lines = run_pass(EvalProgressHook(), runner, 'test')
    assert lines[0] == ('Evaluating checkpoint work_dirs/t/merged.pth: '
                        f'{num_images} images in {num_batches} batches')
    done = []
    for line in lines[1:]:
        found = PROGRESS.match(line)
        assert found, line
        assert int(found.group(2)) == num_batches
        done.append(int(found.group(1)))
    assert done[-1] == num_batches  # the end is always logged
    step = -(-num_batches // 10)  # at least every ~10 %
    assert all(b - a <= step for a, b in zip([0] + done, done))
    assert len(lines) <= 12


def test_subject_set_by_the_task_hook_and_iteration():
    runner = fake_runner(3, 5, train_iter=4)
    set_eval_subject(runner, "the task's input checkpoint base.pth")
    lines = run_pass(EvalProgressHook(), runner, 'val')
    assert lines[0] == ("Evaluating the task's input checkpoint base.pth: "
                        '5 images in 3 batches')
    set_eval_subject(runner, 'the model after forgetting, iteration {iter}')
    runner.logger.lines.clear()
    assert run_pass(EvalProgressHook(), runner, 'val')[0].startswith(
        'Evaluating the model after forgetting, iteration 4: 5 images')
    set_eval_subject(runner, None)  # back to the default
    assert EvalProgressHook().subject(runner, 'val') == \
        'the model at iteration 4'
    assert EvalProgressHook(what='X').subject(runner, 'val') == 'X'


def test_only_rank_0_logs(monkeypatch):
    import gslora_det.hooks.eval_progress_hook as module
    monkeypatch.setattr(module, 'is_main_process', lambda: False)
    assert run_pass(EvalProgressHook(), fake_runner(5, 5), 'val') == []


def test_registered():
    from mmengine.registry import HOOKS
    import gslora_det.hooks  # noqa: F401
    assert isinstance(HOOKS.build(dict(type='EvalProgressHook')),
                      EvalProgressHook)
