"""What a person watching the terminal sees during long runs.

* :class:`LoopProgress`: ``"<tag> task k/N: ... (elapsed 0:04:40, ETA
  0:09:20)"`` lines for loops over runs (forgetting sequences, benchmarks);
  the ETA comes from the wall times of the items finished in this process.
* :func:`quiet_console`: a runner class whose console leaves out the
  runner's one-off dumps (config, environment, hook order, per-parameter
  optimizer settings); its log file keeps everything. ``tools/train.py
  --quiet-config`` uses it for the children of a sequence, which would
  otherwise print the whole config and environment once per task.
"""
import logging
import time
from datetime import timedelta
from typing import Dict, Optional

#: Starts of the messages an mmengine runner logs once at INFO while it is
#: set up: ``Runner._log_env`` (environment, then config), the hook order
#: (both in ``Runner.__init__``), and the optimizer constructor's line per
#: parameter with a paramwise setting (at the start of training).
RUNNER_DUMPS = ('System environment:', 'Config:\n',
                'Hooks will be executed in the following order',
                'paramwise_options -- ')


def duration(seconds: float) -> str:
    """``H:MM:SS`` (as mmengine's ETA and the eval progress hook)."""
    return str(timedelta(seconds=round(seconds)))


class LoopProgress:
    """Progress lines of a loop over long items (tasks, methods, α's).

    Args:
        total (int): Items in the loop.
        noun (str): What an item is, e.g. ``'task'``.
        tag (str): Line prefix, e.g. ``'[sequence]'``.
    """

    def __init__(self, total: int, noun: str = 'task', tag: str = ''):
        self.total, self.noun, self.tag = total, noun, tag
        self.t0 = time.time()
        self.walls = []  # wall times of the items finished in this run
        self.left = total  # items not finished (nor skipped) yet
        self._started: Dict[int, float] = {}

    def eta(self, left: Optional[int] = None) -> str:
        """``'ETA H:MM:SS'`` for ``left`` items from the mean wall time of
        the finished ones; ``'ETA unknown'`` before the first finishes."""
        left = self.left if left is None else left
        if not self.walls:
            return 'ETA unknown'
        return f'ETA {duration(sum(self.walls) / len(self.walls) * left)}'

    def _say(self, index: int, text: str, tail: str) -> str:
        line = (f'{self.tag} {self.noun} {index}/{self.total}{text} '
                f'(elapsed {duration(time.time() - self.t0)}, {tail})')
        print(line.lstrip(), flush=True)
        return line.lstrip()

    def start(self, index: int, detail: str = '') -> str:
        """Item ``index`` starts; the ETA counts it as left to do."""
        self._started[index] = time.time()
        return self._say(index, f': {detail}' if detail else ' starts',
                         self.eta())

    def end(self, index: int) -> str:
        """Item ``index`` finished: its wall time feeds the ETA."""
        wall = time.time() - self._started.pop(index, self.t0)
        self.walls.append(wall)
        self.left -= 1
        tail = self.eta() if self.left else f'all {self.total} done'
        return self._say(index, f' finished in {duration(wall)}', tail)

    def skip(self, index: int) -> str:
        """Item ``index`` was finished by an earlier run."""
        self.left -= 1
        return self._say(index, ' done already, skipping', self.eta())


class RunnerDumpFilter(logging.Filter):
    """Drops the records that start with one of :data:`RUNNER_DUMPS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        head = str(record.msg).lstrip('\n-')[:60]
        return not head.startswith(RUNNER_DUMPS)


def quiet_console_handlers(logger: logging.Logger) -> None:
    """Add :class:`RunnerDumpFilter` to the console handlers of
    ``logger``, not to its file handlers (a FileHandler is a
    StreamHandler too)."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler):
            handler.addFilter(RunnerDumpFilter())


def quiet_console(runner_cls: type) -> type:
    """``runner_cls`` whose console leaves out the one-off dumps.

    mmengine builds the logger and logs the dumps in the same
    ``Runner.__init__``, so the filter must be in place when the logger is
    built: ``build_logger`` is the only hook in between.

    Args:
        runner_cls (type): A runner class (``mmengine.runner.Runner`` or a
            subclass).

    Returns:
        type: A subclass of ``runner_cls`` of the same name.
    """

    class QuietConsole(runner_cls):

        def build_logger(self, *args, **kwargs):
            logger = super().build_logger(*args, **kwargs)
            quiet_console_handlers(logger)
            return logger

    QuietConsole.__name__ = runner_cls.__name__
    QuietConsole.__qualname__ = runner_cls.__qualname__
    return QuietConsole
