"""Hooks of an attack run: train only some modules, log step progress."""
import math
import time
from typing import Sequence

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from gslora_det.attacks.params import restrict_trainable, under, unwrap
from gslora_det.console import duration


def _stateful_types() -> tuple:
    """Modules whose train mode changes their output or buffers."""
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.dropout import _DropoutNd
    types = [_BatchNorm, _DropoutNd]
    try:
        from mmcv.cnn.bricks.drop import DropPath
        types.append(DropPath)
    except ImportError:  # mmcv without its cnn bricks
        pass
    return tuple(types)


@HOOKS.register_module()
class TrainOnlyHook(Hook):
    """Train only the modules under ``prefixes``: the rest is frozen, and
    its normalization and dropout layers run in eval mode.

    ``requires_grad=False`` alone would still let the frozen part change
    what the head sees: BatchNorm running statistics update in train mode
    and dropout stays on. The detector itself must stay in train mode (the
    DETR detectors and heads branch on ``self.training`` to compute the
    loss), so only those layers are switched; the loop calls
    ``model.train()`` before every iteration, so it is done again in
    ``before_train_iter``.

    Args:
        prefixes (Sequence[str]): Module/parameter names to train, e.g.
            ``['bbox_head.cls_branches']``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, prefixes: Sequence[str]) -> None:
        self.prefixes = list(prefixes)
        self._types = _stateful_types()

    def before_run(self, runner) -> None:
        # After the optimizer is built (Runner.train builds it before
        # before_run): frozen parameters stay in its groups but get no
        # gradient, and torch's optimizers skip parameters without one.
        restrict_trainable(runner.model, self.prefixes)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        for name, module in unwrap(runner.model).named_modules():
            if isinstance(module, self._types) and \
                    not under(name, self.prefixes):
                module.eval()


@HOOKS.register_module()
class AttackProgressHook(Hook):
    """``attack i/N: <label> step j/K, loss x, ETA h:mm:ss`` lines.

    Args:
        label (str): What is attacked, e.g. ``'merged k_shot k=5'``.
        index (int): This attack's number (1-based) in the whole run.
        total (int): Attacks in the whole run.
        parts (int): Lines per attack, about. Defaults to 10.
    """

    priority = 'LOW'

    def __init__(self, label: str, index: int, total: int,
                 parts: int = 10) -> None:
        self.label, self.index, self.total = label, index, total
        self.parts = max(1, int(parts))
        self._t0 = None
        self._start = 0

    def before_train(self, runner) -> None:
        self._t0 = time.time()
        self._start = runner.iter

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        # runner.iter is the index of the iteration just done.
        step, steps = runner.iter + 1, runner.max_iters
        every = max(1, math.ceil(steps / self.parts))
        if step % every and step != steps:
            return
        per_step = (time.time() - self._t0) / max(1, step - self._start)
        loss = (outputs or {}).get('loss')
        if hasattr(loss, 'detach'):  # mmengine's log_vars hold tensors
            loss = loss.detach().float().mean().item()
        loss = f', loss {loss:.4f}' if loss is not None else ''
        runner.logger.info(
            f'attack {self.index}/{self.total}: {self.label} step '
            f'{step}/{steps}{loss}, ETA {duration(per_step * (steps - step))}')
