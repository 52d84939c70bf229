"""RetainForgetBatchSampler across N ranks, built from the COCO task config's
own loader settings on a light fake dataset (no images, no annotation
file): equal, exact and full batches on every rank, every epoch."""
import os.path as osp
from unittest import mock

import pytest
from mmdet.registry import DATA_SAMPLERS
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

import gslora_det  # noqa: F401
from conftest import CONFIGS

COCO_TASK = osp.join(CONFIGS, 'coco',
                     'gslora_deformable-detr_r50_task1_coco.py')
# COCO-like (10 % replay of train2017: ~11.8k retain, ~2.5k forget) and
# small odd counts, where padding matters.
COUNTS = [(11831, 2517), (13, 5), (3, 1)]
SEED = 7


class FakeSplits:
    """A ConcatDataset stand-in: ``num_retain`` retain then ``num_forget``
    forget samples."""

    def __init__(self, num_retain: int, num_forget: int) -> None:
        self.num_retain, self.num_forget = num_retain, num_forget

    def __len__(self) -> int:
        return self.num_retain + self.num_forget

    def __getitem__(self, i: int) -> int:
        return i

    def get_data_info(self, i: int) -> dict:
        return dict(forget_role='retain' if i < self.num_retain else 'forget')


@pytest.fixture(scope='module')
def loader_cfg():
    return Config.fromfile(COCO_TASK).train_dataloader


def build(loader_cfg, dataset, rank=0, world_size=1, seed=SEED, **kwargs):
    """The config's index and batch samplers as rank ``rank`` builds them
    (in mmdet's scope, as the Runner does: an earlier test may have left
    another default scope current)."""
    with mock.patch('mmengine.dataset.sampler.get_dist_info',
                    return_value=(rank, world_size)), \
            DefaultScope.overwrite_default_scope('mmdet'):
        sampler = DATA_SAMPLERS.build(dict(loader_cfg.sampler, seed=seed),
                                      default_args=dict(dataset=dataset))
        assert (sampler.rank, sampler.world_size) == (rank, world_size)
        return DATA_SAMPLERS.build(
            dict(loader_cfg.batch_sampler, **kwargs),
            default_args=dict(sampler=sampler,
                              batch_size=loader_cfg.batch_size))


def epoch_batches(samplers, epoch):
    """{rank: batches}, with ``set_epoch`` called as mmengine does it."""
    out = {}
    for rank, bs in enumerate(samplers):
        bs.sampler.set_epoch(epoch)
        out[rank] = list(bs)
    return out


@pytest.mark.parametrize('counts', COUNTS)
@pytest.mark.parametrize('world_size', [1, 2, 8])
def test_equal_exact_full_batches_on_every_rank(loader_cfg, world_size,
                                                counts):
    num_retain, num_forget = counts
    ds = FakeSplits(*counts)
    samplers = [build(loader_cfg, ds, r, world_size)
                for r in range(world_size)]
    fpb = loader_cfg.batch_sampler.forget_per_batch
    rpb = loader_cfg.batch_size - fpb
    assert (samplers[0].retain_per_batch, samplers[0].forget_per_batch) == \
        (rpb, fpb)
    for epoch in range(3):
        batches = epoch_batches(samplers, epoch)
        lengths = {len(b) for b in batches.values()}
        assert len(lengths) == 1, lengths  # the same count on every rank
        for rank, bs in enumerate(samplers):
            assert len(bs) == len(batches[rank])  # len() is exact
        used_retain, used_forget = [], set()
        for rank_batches in batches.values():
            for batch in rank_batches:
                assert len(batch) == rpb + fpb
                assert all(i < num_retain for i in batch[:rpb])
                assert all(i >= num_retain for i in batch[rpb:])
                used_retain += batch[:rpb]
                used_forget.update(batch[rpb:])
        # every retain image once per epoch, padding below one global step
        assert set(used_retain) == set(range(num_retain))
        assert len(used_retain) - num_retain < world_size * rpb
        # forget images spread over ranks: here every one is drawn
        assert used_forget == set(range(num_retain, len(ds)))


def test_epochs_reshuffle_and_the_seed_fixes_the_order(loader_cfg):
    ds = FakeSplits(101, 23)
    samplers = [build(loader_cfg, ds, r, 2) for r in range(2)]
    first, second = epoch_batches(samplers, 0), epoch_batches(samplers, 1)
    assert first != second
    assert first[0] != first[1]  # ranks draw different images
    again = [build(loader_cfg, ds, r, 2) for r in range(2)]
    assert epoch_batches(again, 0) == first
    assert epoch_batches(again, 1) == second
    other = [build(loader_cfg, ds, r, 2, seed=SEED + 1) for r in range(2)]
    assert epoch_batches(other, 0) != first


def test_single_process_follows_the_index_sampler_order(loader_cfg):
    """One process: the retain images come in DefaultSampler's own order
    (as before this sampler sharded by role), then cycle to fill the last
    batch; the forget images too, cycled."""
    ds = FakeSplits(31, 7)
    bs = build(loader_cfg, ds)
    bs.sampler.set_epoch(3)
    order = list(bs.sampler)
    retain = [i for i in order if i < 31]
    forget = [i for i in order if i >= 31]
    batches = list(bs)
    got_retain = [i for b in batches for i in b[:2]]
    got_forget = [i for b in batches for i in b[2:]]
    assert got_retain == retain + retain[:1]  # 31 -> 32: one padded
    assert len(batches) == len(bs) == 16
    # 7 forget images padded to 8 (a multiple of forget_per_batch), cycled
    share = forget + forget[:1]
    assert got_forget == [share[k % 8] for k in range(32)]


def test_drop_last_cuts_to_full_batches(loader_cfg):
    ds = FakeSplits(37, 5)
    samplers = [build(loader_cfg, ds, r, 4, drop_last=True)
                for r in range(4)]
    batches = epoch_batches(samplers, 0)
    assert {len(b) for b in batches.values()} == {4} == \
        {len(s) for s in samplers}  # 37 // (4 ranks * 2)
    retain = [i for b in batches.values() for x in b for i in x[:2]]
    assert len(retain) == len(set(retain)) == 32
    # a set smaller than one global step: no batch at all, on every rank
    tiny = [build(loader_cfg, FakeSplits(5, 2), r, 4, drop_last=True)
            for r in range(4)]
    assert all(len(s) == 0 == len(list(s)) for s in tiny)


@pytest.mark.parametrize('index_sampler', [SequentialSampler, RandomSampler])
def test_plain_torch_sampler_is_one_unsharded_rank(index_sampler):
    from gslora_det.data import RetainForgetBatchSampler
    ds = FakeSplits(9, 4)
    bs = RetainForgetBatchSampler(index_sampler(ds), batch_size=4,
                                  forget_per_batch=2)
    batches = list(bs)
    assert (bs.rank, bs.world_size) == (0, 1)
    assert len(batches) == len(bs) == 5
    assert {i for b in batches for i in b[:2]} == set(range(9))
    if index_sampler is SequentialSampler:
        assert batches[0] == [0, 1, 9, 10] and batches[-1] == [8, 0, 9, 10]
    from mmengine.dataset import InfiniteSampler
    with pytest.raises(ValueError, match='finite index sampler'):
        RetainForgetBatchSampler(InfiniteSampler(ds, seed=0), batch_size=4)


def test_infinite_iterator_reshuffles_through_set_epoch(loader_cfg):
    """Iteration-based training re-iterates the DataLoader; mmengine calls
    ``set_epoch`` on ``batch_sampler.sampler`` (the DataLoader's own
    ``sampler`` is torch's default one, without it)."""
    from mmengine.runner.loops import _InfiniteDataloaderIterator
    bs = build(loader_cfg, FakeSplits(8, 3))
    loader = DataLoader(FakeSplits(8, 3), batch_sampler=bs,
                        collate_fn=lambda x: x)
    with mock.patch('mmengine.runner.loops.time.sleep'):
        it = _InfiniteDataloaderIterator(loader)
        steps = [next(it) for _ in range(2 * len(bs))]
    assert bs.sampler.epoch == 1
    first, second = steps[:len(bs)], steps[len(bs):]
    assert first != second
    assert sorted(i for b in first for i in b[:2]) == list(range(8)) == \
        sorted(i for b in second for i in b[:2])
