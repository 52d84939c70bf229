"""A batch sampler that puts retain and forget images in every batch.

GS-LoRA takes one retain batch and one forget batch per step, cycling the
(smaller) forget set. Here both live in one ``ConcatDataset`` and each batch
holds ``batch_size - forget_per_batch`` retain and ``forget_per_batch``
forget indices, so that a single forward pass serves both losses. An epoch
is one pass over the retain images.
"""
import math
from typing import Iterator, List

from mmdet.registry import DATA_SAMPLERS
from torch.utils.data import BatchSampler, Sampler


@DATA_SAMPLERS.register_module()
class RetainForgetBatchSampler(BatchSampler):
    """Mix retain and forget samples in each batch.

    Args:
        sampler (Sampler): The index sampler (shuffling, sharding across
            ranks). Its ``dataset`` items must carry ``forget_role``.
        batch_size (int): Images per batch (retain + forget).
        forget_per_batch (int): Forget images per batch. Defaults to half
            the batch (the reference uses equal batch sizes).
        drop_last (bool): Drop a last, smaller retain batch.
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
        self.sampler = sampler
        self.batch_size = batch_size
        self.forget_per_batch = forget_per_batch
        self.retain_per_batch = batch_size - forget_per_batch
        self.drop_last = drop_last
        dataset = sampler.dataset
        self._is_forget = [
            dataset.get_data_info(i).get('forget_role') == 'forget'
            for i in range(len(dataset))
        ]
        if not any(self._is_forget) or all(self._is_forget):
            raise ValueError('RetainForgetBatchSampler needs a dataset with '
                             'both retain and forget samples')

    def __iter__(self) -> Iterator[List[int]]:
        order = list(self.sampler)
        retain = [i for i in order if not self._is_forget[i]]
        forget = [i for i in order if self._is_forget[i]]
        if not forget:  # this rank's shard drew no forget sample
            forget = [i for i, f in enumerate(self._is_forget) if f]
        cursor = 0
        for start in range(0, len(retain), self.retain_per_batch):
            batch = retain[start:start + self.retain_per_batch]
            if len(batch) < self.retain_per_batch and self.drop_last:
                return
            for _ in range(self.forget_per_batch):
                batch.append(forget[cursor % len(forget)])
                cursor += 1
            yield batch

    def __len__(self) -> int:
        n = sum(1 for f in self._is_forget if not f)
        if hasattr(self.sampler, 'num_samples'):  # sharded across ranks
            n = math.ceil(n * self.sampler.num_samples / len(self._is_forget))
        if self.drop_last:
            return n // self.retain_per_batch
        return math.ceil(n / self.retain_per_batch)
