"""One role's subset of *any* mmdet detection dataset: a dataset wrapper.

``ForgetRetainCocoDataset`` is a ``CocoDataset`` subclass: a task config
using it restates the detector's data root, annotation file and pipeline.
This wrapper takes the detector config's own training dataset instead
(COCO, VOC, LVIS, a user's ``CocoDataset`` with its own ``metainfo``...):
it builds it as configured (its ``filter_cfg``, its pipeline), then keeps
one role's images, exactly as :mod:`gslora_det.data.forget_split` defines
the roles, and tags every sample (``forget_role``, ``forget_labels``).
``PackDetInputs`` in the inner pipeline gets those two meta keys added, so
the detector's pipeline is used unchanged otherwise.

The retain and forget wrappers of one task share one built inner dataset
per process (one annotation parse), until :func:`clear_inner_cache`.
"""
import copy
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmdet.registry import DATASETS

from gslora_det.data.forget_split import (RoleSplitMixin, check_split_args,
                                          restrict_instances)

#: Meta keys the forgetting loss reads from every training sample.
TASK_META_KEYS = ('forget_role', 'forget_labels')
_INNER: Dict[str, BaseDataset] = {}


def clear_inner_cache() -> None:
    """Forget the shared inner datasets (the loops call it once both
    splits are built)."""
    _INNER.clear()


def add_task_meta_keys(pipeline: List[dict]) -> List[dict]:
    """A copy of ``pipeline`` whose ``PackDetInputs`` also packs the task's
    tags (its own ``meta_keys``, or mmdet's default ones, plus
    :data:`TASK_META_KEYS`).

    Raises:
        ValueError: the pipeline has no ``PackDetInputs``.
    """
    from mmdet.datasets.transforms import PackDetInputs
    pipeline = copy.deepcopy(list(pipeline))
    packs = [t for t in pipeline if isinstance(t, dict) and
             str(t.get('type', '')).split('.')[-1] == 'PackDetInputs']
    if not packs:
        raise ValueError(
            'the training pipeline has no PackDetInputs: the forgetting '
            "split needs it to pack each sample's 'forget_role' and "
            "'forget_labels'; end the pipeline with dict(type="
            "'PackDetInputs')")
    for pack in packs:
        keys = tuple(pack.get('meta_keys',
                              PackDetInputs.__init__.__defaults__[0]))
        pack['meta_keys'] = keys + tuple(k for k in TASK_META_KEYS
                                         if k not in keys)
    return pipeline


def _build_inner(dataset: Union[dict, BaseDataset]) -> BaseDataset:
    if not isinstance(dataset, dict):
        return dataset
    cfg = copy.deepcopy(dataset)
    cfg['pipeline'] = add_task_meta_keys(cfg.get('pipeline') or [])
    key = repr(sorted(cfg.items(), key=lambda kv: kv[0]))
    if key not in _INNER:
        built = DATASETS.build(cfg)
        if hasattr(built, 'full_init'):
            built.full_init()
        _INNER[key] = built
    return _INNER[key]


@DATASETS.register_module()
class ForgetRetainSplit(RoleSplitMixin):
    """The retain or forget images of a built detection dataset.

    Args:
        dataset (dict | BaseDataset): The detector's training dataset
            (config or built); its ``metainfo['classes']`` is the detector's
            class list and labels keep its numbering.
        role (str): ``'retain'`` or ``'forget'``.
        forget_classes (Sequence[str]): This task's forget classes.
        previously_forgotten (Sequence[str]): Classes forgotten earlier.
        sample_ratio (float, optional): Fraction of the role's images kept.
            Defaults to 0.1 (the reference's replay).
        k_shot (int, optional): A few-shot sample instead. Defaults to None.
        k_shot_mode (str): See ``sample_images``. Defaults to 'per_class'.
        sample_seed (int): Sampling seed. Defaults to 0.
        sample_rounding (str): ``'round'`` or ``'floor'``.
        forget_keeps_old (bool): Forget images also hold (and the loss
            treats as forgotten) the classes of earlier tasks. Defaults to
            True: with this task's classes alone they creep back.
        forget_keeps_retained (bool): Forget images keep their retained
            objects as positives. Defaults to True: what a model retrained
            without the class would see there.
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 role: str = 'retain',
                 forget_classes: Sequence[str] = (),
                 previously_forgotten: Sequence[str] = (),
                 sample_ratio: Optional[float] = 0.1,
                 k_shot: Optional[int] = None,
                 k_shot_mode: str = 'per_class',
                 sample_seed: int = 0,
                 sample_rounding: str = 'round',
                 forget_keeps_old: bool = True,
                 forget_keeps_retained: bool = True) -> None:
        check_split_args(role, sample_ratio, k_shot, k_shot_mode,
                         sample_rounding)
        self.dataset = _build_inner(dataset)
        self.max_refetch = int(getattr(self.dataset, 'max_refetch', 1000))
        self.role = role
        self.forget_classes = tuple(forget_classes)
        self.previously_forgotten = tuple(previously_forgotten)
        self.forget_keeps_old = forget_keeps_old
        self.forget_keeps_retained = forget_keeps_retained
        self.metainfo = copy.deepcopy(self.dataset.metainfo)
        classes = list(self.metainfo.get('classes') or ())
        unknown = [c for c in self.forget_classes + self.previously_forgotten
                   if c not in classes]
        if unknown:
            raise ValueError(f'unknown class(es) {unknown}: the training '
                             f'dataset\'s classes are {classes}')
        self.data_list = self._select(sample_ratio, k_shot, k_shot_mode,
                                      sample_seed, sample_rounding)

    def _select(self, ratio, k_shot, k_shot_mode, seed,
                rounding) -> List[dict]:
        inner = [self.dataset.get_data_info(i)
                 for i in range(len(self.dataset))]
        if any('instances' not in info for info in inner):
            raise ValueError(
                f'{type(self.dataset).__name__} gives no `instances` in its '
                'data infos: the split needs an mmdet detection dataset '
                '(BaseDetDataset: CocoDataset, VOCDataset, ...)')
        # Every sample is tagged, so the loss never has to guess which of
        # a forget image's objects are forgotten.
        return self.draw_role(inner, ratio, k_shot, k_shot_mode, seed,
                              rounding, source='the training dataset',
                              tag_all=True)

    def held_out_infos(self, n: int, seed: int = 0) -> List[dict]:
        """Up to ``n`` images of the training dataset that qualify for this
        role but were not drawn (the model never trains on them), their
        annotations kept to the role's classes; a seeded draw, in dataset
        order. Empty when the draw took every such image.

        The controller probes these (the forget score, the retained
        guard): on the replay images themselves the verdict would be on
        images the model is trained on, not on the classes.
        """
        def key(info):
            return info.get('img_path', info.get('img_id'))
        drawn = {key(info) for info in self.data_list}
        pool = restrict_instances(
            [info for info in (self.dataset.get_data_info(i)
                               for i in range(len(self.dataset)))
             if key(info) not in drawn], self.role_labels())
        if len(pool) <= n:
            return pool
        picked = np.random.default_rng(seed).choice(len(pool), size=n,
                                                    replace=False)
        return [pool[i] for i in sorted(picked.tolist())]

    # -- the dataset protocol mmengine's loaders and samplers use --------
    def __len__(self) -> int:
        return len(self.data_list)

    def get_data_info(self, idx: int) -> dict:
        return copy.deepcopy(self.data_list[idx])

    def __getitem__(self, idx: int) -> dict:
        # As mmengine's BaseDataset: a transform may drop a sample (e.g. a
        # crop without objects); take another one, seeded by the index.
        rng = np.random.default_rng(idx)
        for _ in range(self.max_refetch + 1):
            data = self.dataset.pipeline(self.get_data_info(idx))
            if data is not None:
                return data
            idx = int(rng.integers(len(self)))
        raise RuntimeError(
            f'the training pipeline returned no sample for '
            f'{self.max_refetch + 1} images in a row; check its transforms '
            '(e.g. a crop that leaves no object)')

    def full_init(self) -> None:
        """Built at construction (mmengine's wrappers have this too)."""
