"""A batch sampler that puts retain and forget images in every batch.

GS-LoRA takes one retain batch and one forget batch per step, cycling the
(smaller) forget set. Here both live in one ``ConcatDataset`` and each batch
holds ``batch_size - forget_per_batch`` retain and ``forget_per_batch``
forget indices, so that a single forward pass serves both losses. An epoch
is one pass over the retain images.

Sharding across ranks is done here, by role, not by the index sampler:
mmengine's ``DefaultSampler`` shards the whole ``ConcatDataset``, so ranks
would hold different numbers of retain images, draw different numbers of
batches and pair different steps in DDP's all-reduces (a hang with an
epoch-based loop). This sampler rebuilds the index sampler's *global*
order (its ``seed``, ``epoch``, ``shuffle``), splits it by role and gives
every rank the same number of full batches.
"""
import math
from typing import Iterator, List

import torch
from mmdet.registry import DATA_SAMPLERS
from mmengine.dataset import InfiniteSampler
from torch.utils.data import BatchSampler, Sampler


def _pad_or_cut(order: torch.Tensor, multiple: int,
                cut: bool) -> torch.Tensor:
    """``order`` cut down to, or cycled up to, a multiple of ``multiple``.

    Args:
        order (Tensor): (n,) dataset indices, n >= 1.
        multiple (int): The length must become a multiple of this.
        cut (bool): Drop the tail instead of padding.

    Returns:
        Tensor: (m,) with m % multiple == 0 (m may be 0 when ``cut``).
    """
    n = order.numel()
    if cut:
        return order[:n // multiple * multiple]
    size = math.ceil(n / multiple) * multiple
    return order.repeat(math.ceil(size / n))[:size]  # as DefaultSampler


@DATA_SAMPLERS.register_module()
class RetainForgetBatchSampler(BatchSampler):
    """Mix retain and forget samples in each batch; equal batches per rank.

    Per epoch, the retain images of the global order are padded (cycled) to
    a multiple of ``world_size * retain_per_batch`` (cut with
    ``drop_last``) and rank r takes every ``world_size``-th one from r on,
    so each retain image is used at least once per epoch across ranks. The
    forget images are spread over the ranks the same way (padded to a
    multiple of ``world_size * forget_per_batch``) and each rank cycles its
    own share. Every rank yields ``len(self)`` batches of exactly
    ``retain_per_batch`` retain then ``forget_per_batch`` forget indices.

    Args:
        sampler (Sampler): The index sampler. Of an mmengine
            ``DefaultSampler`` (or any sampler with ``seed``, ``epoch``,
            ``shuffle``, ``rank`` and ``world_size``) only those attributes
            are used: they give the epoch's order (``set_epoch`` changes
            it) and this rank's share; its own sharding and ``round_up``
            are not. Any other sampler is read once per epoch as the order
            of every index: rank 0 of 1. Its ``dataset`` (``data_source``)
            items must carry ``forget_role``.
        batch_size (int): Images per batch (retain + forget).
        forget_per_batch (int): Forget images per batch. Defaults to half
            the batch (the reference uses equal batch sizes).
        drop_last (bool): Cut the epoch's retain images to full batches on
            every rank instead of cycling the first ones again.
            Defaults to False.
    """

    def __init__(self, sampler: Sampler, batch_size: int,
                 forget_per_batch: int = None,
                 drop_last: bool = False) -> None:
        if forget_per_batch is None:
            forget_per_batch = batch_size // 2
        if not 0 < forget_per_batch < batch_size:
            raise ValueError(
                f'forget_per_batch must be between 1 and batch_size - 1 '
                f'({batch_size - 1}), got {forget_per_batch}')
        if isinstance(sampler, InfiniteSampler):  # list() would not end
            raise ValueError('RetainForgetBatchSampler needs a finite index '
                             "sampler: use dict(type='DefaultSampler')")
        self.sampler = sampler
        self.batch_size = batch_size
        self.forget_per_batch = forget_per_batch
        self.retain_per_batch = batch_size - forget_per_batch
        self.drop_last = drop_last
        # mmengine samplers hold ``dataset``, torch's ``data_source``.
        dataset = getattr(sampler, 'dataset', None)
        if dataset is None:
            dataset = sampler.data_source
        self._is_forget = torch.tensor([
            dataset.get_data_info(i).get('forget_role') == 'forget'
            for i in range(len(dataset))
        ], dtype=torch.bool)
        self._num_forget = int(self._is_forget.sum())
        self._num_retain = len(self._is_forget) - self._num_forget
        if not self._num_forget or not self._num_retain:
            raise ValueError('RetainForgetBatchSampler needs a dataset with '
                             'both retain and forget samples')
        self._sharded = all(
            hasattr(sampler, a)
            for a in ('seed', 'epoch', 'shuffle', 'rank', 'world_size'))
        self.rank = sampler.rank if self._sharded else 0
        self.world_size = sampler.world_size if self._sharded else 1

    def _global_order(self) -> torch.Tensor:
        """(n,) this epoch's order of the whole dataset, the same on every
        rank: ``DefaultSampler``'s permutation before it shards it."""
        if not self._sharded:
            return torch.as_tensor(list(self.sampler), dtype=torch.long)
        n = len(self._is_forget)
        if not self.sampler.shuffle:
            return torch.arange(n)
        g = torch.Generator()
        g.manual_seed(self.sampler.seed + self.sampler.epoch)
        return torch.randperm(n, generator=g)

    def __iter__(self) -> Iterator[List[int]]:
        order = self._global_order()
        is_forget = self._is_forget[order]
        r, w = self.rank, self.world_size
        retain = _pad_or_cut(order[~is_forget], w * self.retain_per_batch,
                             self.drop_last)[r::w].tolist()
        forget = _pad_or_cut(order[is_forget], w * self.forget_per_batch,
                             False)[r::w].tolist()
        cursor = 0
        for start in range(0, len(retain), self.retain_per_batch):
            batch = retain[start:start + self.retain_per_batch]
            for _ in range(self.forget_per_batch):
                batch.append(forget[cursor % len(forget)])
                cursor += 1
            yield batch

    def __len__(self) -> int:
        """Batches per epoch, the same on every rank (exact)."""
        step = self.world_size * self.retain_per_batch
        if self.drop_last:
            return self._num_retain // step
        return math.ceil(self._num_retain / step)
