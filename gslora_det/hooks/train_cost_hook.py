"""Measure what one training iteration costs in memory.

On a GPU, ``torch.cuda.max_memory_allocated`` is the answer. On the CPU
torch keeps no allocator statistics and the process RSS is dominated by
the libraries, so the hook adds up the tensors that a training step holds
at its peak (the end of the forward pass): every weight, the gradients and
optimiser state of the trainable ones, and the activations autograd saves
for the backward pass (counted through ``saved_tensors_hooks``, each
storage once, weights excluded). The same accounting applies to every
method, so ratios between methods are meaningful.
"""
import json
import os.path as osp
from typing import Dict, Iterable, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from gslora_det.io_utils import atomic_write_text


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class SavedTensorCounter:
    """Counts the bytes autograd saves for backward inside a ``with``
    block, each storage once, the given weights excluded."""

    def __init__(self, weights: Iterable[torch.Tensor]) -> None:
        self._weights = {p.untyped_storage().data_ptr() for p in weights}
        self._saved: Dict[int, int] = {}
        self._ctx = None

    def _pack(self, tensor):
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return tensor  # e.g. a tensor without storage
        if storage.data_ptr() not in self._weights:
            self._saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def total_bytes(self) -> int:
        return sum(self._saved.values())

    def __enter__(self) -> 'SavedTensorCounter':
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack,
                                                             lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)


def model_weights(model: torch.nn.Module) -> list:
    """The model's weights and a DER teacher's, which also sits in
    memory."""
    params = list(model.parameters())
    teacher: Optional[torch.nn.Module] = model.__dict__.get('teacher')
    if teacher is not None:
        params += list(teacher.parameters())
    return params


def memory_breakdown(model: torch.nn.Module, optimizer,
                     activation_bytes: int) -> Dict:
    """Bytes of the tensors a training step holds at its peak."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    cost = dict(
        weight_bytes=sum(_nbytes(p) for p in model_weights(model)),
        grad_bytes=sum(_nbytes(p) for p in trainable),
        optimizer_state_bytes=sum(
            _nbytes(v) for state in optimizer.state.values()
            for v in state.values() if isinstance(v, torch.Tensor)),
        activation_bytes=activation_bytes,
        trainable_params=sum(p.numel() for p in trainable),
        total_params=sum(p.numel() for p in model.parameters()))
    cost['train_tensor_bytes'] = (
        cost['weight_bytes'] + cost['grad_bytes'] +
        cost['optimizer_state_bytes'] + cost['activation_bytes'])
    cost['cuda_max_allocated_bytes'] = (
        torch.cuda.max_memory_allocated() if torch.cuda.is_available()
        else None)
    return cost


@HOOKS.register_module()
class TrainCostHook(Hook):
    """Writes ``train_cost.json``: the memory of one training iteration.

    Args:
        measure_iter (int): 0-based iteration to measure (after the
            optimiser has created its state). Defaults to 2.
        file_name (str): Output file in the work dir.
    """

    priority = 'VERY_LOW'

    def __init__(self, measure_iter: int = 2,
                 file_name: str = 'train_cost.json') -> None:
        self.measure_iter = measure_iter
        self.file_name = file_name
        self._counter: Optional[SavedTensorCounter] = None

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter != self.measure_iter:
            return
        self._counter = SavedTensorCounter(
            model_weights(self._model(runner))).__enter__()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self._counter is None:
            return
        self._counter.__exit__(None, None, None)
        cost = memory_breakdown(self._model(runner),
                                runner.optim_wrapper.optimizer,
                                self._counter.total_bytes)
        cost['iteration'] = runner.iter
        self._counter = None
        if is_main_process():
            atomic_write_text(osp.join(runner.work_dir, self.file_name),
                              json.dumps(cost, indent=2))
        runner.logger.info(
            'Training memory of one iteration: '
            f'{cost["train_tensor_bytes"] / 2**20:.1f} MiB of tensors '
            f'(activations {cost["activation_bytes"] / 2**20:.1f} MiB)')

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model
