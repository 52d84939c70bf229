"""Say what an evaluation pass evaluates, and log its progress with an ETA.

mmengine's ``LoggerHook`` logs val/test progress every ``interval``
batches (e.g. 50): never on a small set, and many silent minutes on a big
model on a CPU. This hook logs ``"Evaluating <what>: N images in M
batches"`` when a pass starts and ``"i/M batches (p %), elapsed, ETA"``
every ``ceil(M / parts)`` batches and at the end, whatever the data size.

Whoever runs a pass can name what it evaluates with
:func:`set_eval_subject` (e.g. ``ForgetTaskHook``: the task's input
checkpoint for "before"); ``{iter}`` in the text becomes the training
iteration.
"""
import math
import time
from datetime import timedelta
from typing import Optional

from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop

#: Message-hub key of the subject of the next passes (not checkpointed).
SUBJECT_KEY = 'gslora/eval_subject'


def set_eval_subject(runner, text: Optional[str]) -> None:
    """Name what the following val/test passes evaluate (None: default).

    Args:
        runner (Runner): The runner.
        text (str, optional): E.g. ``'checkpoint work_dirs/x/merged.pth'``;
            ``{iter}`` is replaced by the training iteration.
    """
    runner.message_hub.update_info(SUBJECT_KEY, text, resumed=False)


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def _length(obj) -> Optional[int]:
    try:
        return len(obj)
    except TypeError:  # an iterable dataset or sampler
        return None


@HOOKS.register_module()
class EvalProgressHook(Hook):
    """Log what a val/test pass evaluates and its progress (rank 0).

    Args:
        what (str, optional): What the passes evaluate when no one set a
            subject (:func:`set_eval_subject`); None: the test pass names
            ``load_from``, a val pass "the model". Defaults to None.
        parts (int): Progress lines per pass, about. Defaults to 10.
    """

    priority = 'VERY_LOW'

    def __init__(self, what: Optional[str] = None, parts: int = 10) -> None:
        if parts < 1:
            raise ValueError(f'parts must be >= 1, got {parts}')
        self.what = what
        self.parts = parts
        self._batches: Optional[int] = None
        self._every = 1
        self._t0 = 0.0

    def before_val_epoch(self, runner) -> None:
        self._start(runner, runner.val_loop.dataloader, 'val')

    def before_test_epoch(self, runner) -> None:
        self._start(runner, runner.test_loop.dataloader, 'test')

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs=None) -> None:
        self._step(runner, batch_idx)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs=None) -> None:
        self._step(runner, batch_idx)

    def subject(self, runner, mode: str) -> str:
        """What the pass evaluates, in words."""
        text = runner.message_hub.get_info(SUBJECT_KEY) or self.what
        # `runner.iter` would build a train loop in a test-only run.
        loop = getattr(runner, '_train_loop', None)
        it = loop.iter if isinstance(loop, BaseLoop) else None
        if text is None:
            load_from = (getattr(runner, 'cfg', None) or {}).get('load_from')
            if mode == 'test' and load_from:
                return f'checkpoint {load_from}'
            return 'the model' if it is None else \
                f'the model at iteration {it}'
        return text.replace('{iter}', '?' if it is None else str(it))

    def _start(self, runner, dataloader, mode: str) -> None:
        self._batches = _length(dataloader)
        self._every = (max(1, math.ceil(self._batches / self.parts))
                       if self._batches else self.parts)
        self._t0 = time.perf_counter()
        if not is_main_process():
            return
        images = _length(getattr(dataloader, 'dataset', None))
        batches = f'{self._batches} batches' if self._batches else \
            'batches of unknown count'
        world = get_world_size()
        per = f' per process ({world} processes)' if world > 1 else ''
        runner.logger.info(
            f'Evaluating {self.subject(runner, mode)}: '
            f'{images if images is not None else "?"} images in '
            f'{batches}{per}')

    def _step(self, runner, batch_idx: int) -> None:
        done, total = batch_idx + 1, self._batches
        if done % self._every and done != total:
            return
        if not is_main_process():
            return
        elapsed = time.perf_counter() - self._t0
        if not total:
            runner.logger.info(f'Evaluation: {done} batches, elapsed '
                               f'{_duration(elapsed)}')
            return
        eta = elapsed / done * (total - done)
        runner.logger.info(
            f'Evaluation: {done}/{total} batches ({100 * done / total:.0f} '
            f'%), elapsed {_duration(elapsed)}, ETA {_duration(eta)}')
