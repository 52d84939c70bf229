"""Retain / forget subsets and the mixed batch sampler."""
import os.path as osp

import pytest
from mmengine.dataset import ConcatDataset, DefaultSampler
from mmengine.registry import DefaultScope

from gslora_det.data import (SHAPES_CLASS_NAMES, ForgetRetainCocoDataset,
                             RetainForgetBatchSampler, sample_images)

FORGET = ['blue_triangle', 'orange_star']
OLD = ['green_square']


def build(ws, role, **kw):
    root = osp.join(str(ws), 'data', 'shapes')
    args = dict(data_root=root, metainfo=dict(classes=SHAPES_CLASS_NAMES),
                ann_file='annotations/instances_train.json',
                data_prefix=dict(img='train/'), pipeline=[], role=role,
                forget_classes=FORGET, previously_forgotten=OLD,
                sample_ratio=None)
    args.update(kw)
    return ForgetRetainCocoDataset(**args)


def labels_of(ds):
    return {ins['bbox_label'] for i in range(len(ds))
            for ins in ds.get_data_info(i)['instances']}


def test_retain_holds_no_forgotten_class(workspace):
    ds = build(workspace, 'retain')
    names = {SHAPES_CLASS_NAMES[i] for i in labels_of(ds)}
    assert names and not names & set(FORGET + OLD)
    assert all(ds.get_data_info(i)['forget_role'] == 'retain'
               for i in range(len(ds)))


def test_forget_holds_only_forget_classes_with_original_labels(workspace):
    ds = build(workspace, 'forget')
    # original indices: blue_triangle = 2, orange_star = 6 (no renumbering)
    assert labels_of(ds) == {2, 6}
    assert ds.metainfo['classes'] == SHAPES_CLASS_NAMES
    assert all(ds.get_data_info(i)['forget_role'] == 'forget'
               for i in range(len(ds)))


def test_ratio_sampling_is_seeded(workspace):
    full = build(workspace, 'retain')
    a = build(workspace, 'retain', sample_ratio=0.25, sample_seed=3)
    b = build(workspace, 'retain', sample_ratio=0.25, sample_seed=3)
    c = build(workspace, 'retain', sample_ratio=0.25, sample_seed=4)
    ids = [[d.get_data_info(i)['img_id'] for i in range(len(d))]
           for d in (a, b, c)]
    assert len(a) == round(0.25 * len(full))
    assert ids[0] == ids[1] and ids[0] != ids[2]


def test_k_shot_takes_k_images_per_class(workspace):
    ds = build(workspace, 'forget', k_shot=2)
    assert len(ds) <= 4
    for label in (2, 6):
        having = [i for i in range(len(ds))
                  if any(x['bbox_label'] == label
                         for x in ds.get_data_info(i)['instances'])]
        assert len(having) >= 2


def test_bad_arguments(workspace):
    with pytest.raises(ValueError, match='role'):
        build(workspace, 'both')
    with pytest.raises(ValueError, match='sample_ratio'):
        build(workspace, 'retain', sample_ratio=0)
    with pytest.raises(ValueError, match='valid names'):
        build(workspace, 'forget', forget_classes=['purple_cow'])


def test_every_batch_mixes_retain_and_forget(workspace):
    retain = build(workspace, 'retain', sample_ratio=0.5)
    forget = build(workspace, 'forget', sample_ratio=0.5)
    concat = ConcatDataset([retain, forget])
    sampler = DefaultSampler(concat, shuffle=True, seed=0)
    batches = RetainForgetBatchSampler(sampler, batch_size=6,
                                       forget_per_batch=2)
    out = list(batches)
    assert len(out) == len(batches)
    n_retain = len(retain)
    seen_retain = []
    for batch in out:
        roles = [concat.get_data_info(i)['forget_role'] for i in batch]
        assert roles.count('forget') == 2
        assert 1 <= roles.count('retain') <= 4
        seen_retain += [i for i in batch if i < n_retain]
    # one epoch: every retain image, the last batch possibly filled up
    # with repeats (RetainForgetBatchSampler pads to full batches)
    assert set(seen_retain) == set(range(n_retain))
    assert len(seen_retain) < n_retain + 4
    with pytest.raises(ValueError, match='forget_per_batch'):
        RetainForgetBatchSampler(sampler, batch_size=4, forget_per_batch=4)
    with pytest.raises(ValueError, match='both retain and forget'):
        RetainForgetBatchSampler(DefaultSampler(retain), batch_size=4)


def test_forget_subset_can_keep_previously_forgotten_classes(workspace):
    ds = build(workspace, 'forget', forget_keeps_old=True)
    # blue_triangle = 2, orange_star = 6, and the old green_square = 1
    assert labels_of(ds) == {1, 2, 6}
    retain = build(workspace, 'retain', forget_keeps_old=True)
    assert not {SHAPES_CLASS_NAMES[i] for i in labels_of(retain)} & set(
        FORGET + OLD)


def test_forget_subset_can_keep_retained_objects(workspace):
    plain = build(workspace, 'forget')
    ds = build(workspace, 'forget', forget_keeps_retained=True)
    # the same images (those showing a forget class) ...
    assert ([ds.get_data_info(i)['img_id'] for i in range(len(ds))] ==
            [plain.get_data_info(i)['img_id'] for i in range(len(plain))])
    # ... with their retained objects too, but not the old forgotten class
    names = {SHAPES_CLASS_NAMES[i] for i in labels_of(ds)}
    assert set(FORGET) <= names and len(names) > len(FORGET)
    assert not names & set(OLD)
    # the loss is told which labels are forgotten
    assert {ds.get_data_info(i)['forget_labels'] for i in range(len(ds))
            } == {(2, 6)}
    old = build(workspace, 'forget', forget_keeps_retained=True,
                forget_keeps_old=True)
    assert old.get_data_info(0)['forget_labels'] == (2, 6, 1)
    assert 'forget_labels' not in plain.get_data_info(0)


def test_keeping_retained_objects_needs_forget_labels_packed(workspace):
    pack = dict(type='PackDetInputs', meta_keys=('img_id', 'forget_role'))
    # mmdet's transforms resolve in the mmdet scope (run alone, no earlier
    # test has set it)
    with DefaultScope.overwrite_default_scope('mmdet'):
        with pytest.raises(ValueError, match="add 'forget_labels' to the "
                           'meta_keys of PackDetInputs'):
            build(workspace, 'forget', forget_keeps_retained=True,
                  pipeline=[pack])
        ok = dict(pack, meta_keys=('img_id', 'forget_role',
                                   'forget_labels'))
        build(workspace, 'forget', forget_keeps_retained=True,
              pipeline=[ok])


# -- sampling as the reference draws it (datasets/pycocotools.py of the
# GS-LoRA object-det branch: int(n * rate) images, few-shot = K × classes
# images from the union) ----------------------------------------------------
def _images(n, labels_of_image):
    return [dict(img_id=i, instances=[dict(bbox_label=lb, ignore_flag=0)
                                      for lb in labels_of_image(i)])
            for i in range(n)]


def test_ratio_count_rounding():
    data = _images(15, lambda i: [0])
    assert len(sample_images(data, 0.5, None, [0], 0)) == 8  # round(7.5)
    assert len(sample_images(data, 0.5, None, [0], 0,
                             rounding='floor')) == 7  # int(15 * 0.5)
    data = _images(19, lambda i: [0])
    assert len(sample_images(data, 0.1, None, [0], 0)) == 2
    assert len(sample_images(data, 0.1, None, [0], 0, rounding='floor')) == 1
    # floor of less than one image still keeps one (the reference: empty)
    assert len(sample_images(data[:5], 0.1, None, [0], 0,
                             rounding='floor')) == 1
    with pytest.raises(ValueError, match='rounding'):
        sample_images(data, 0.1, None, [0], 0, rounding='ceil')


def test_k_shot_union_draws_k_times_classes_from_all_images():
    # class 0 in every image, class 1 in images 0-3, class 2 in image 4
    data = _images(40, lambda i: [0] + ([1] if i < 4 else []) +
                   ([2] if i == 4 else []))
    a = sample_images(data, None, 3, [0, 1, 2], 7, k_shot_mode='union')
    b = sample_images(data, None, 3, [0, 1, 2], 7, k_shot_mode='union')
    ids = [d['img_id'] for d in a]
    assert len(ids) == 9 == len(set(ids))  # 3 shots x 3 classes, no repeat
    assert ids == sorted(ids) == [d['img_id'] for d in b]  # seeded
    # per class (the default) would guarantee the rare classes instead
    per = sample_images(data, None, 3, [0, 1, 2], 7)
    assert 4 in [d['img_id'] for d in per]
    # asking for more than there is keeps every image once
    every = sample_images(data, None, 20, [0, 1, 2], 7, k_shot_mode='union')
    assert [d['img_id'] for d in every] == list(range(40))
    with pytest.raises(ValueError, match='k_shot_mode'):
        sample_images(data, None, 3, [0], 7, k_shot_mode='per_image')


def test_dataset_takes_the_sampling_options(workspace):
    full = build(workspace, 'forget')
    union = build(workspace, 'forget', k_shot=2, k_shot_mode='union')
    assert len(union) == min(2 * len(FORGET), len(full))
    assert union.k_shot_mode == 'union'
    floor = build(workspace, 'retain', sample_ratio=0.5,
                  sample_rounding='floor')
    assert len(floor) == int(len(build(workspace, 'retain')) * 0.5)
    with pytest.raises(ValueError, match='k_shot_mode'):
        build(workspace, 'forget', k_shot=2, k_shot_mode='both')
    with pytest.raises(ValueError, match='sample_rounding'):
        build(workspace, 'retain', sample_rounding='up')
