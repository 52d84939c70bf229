"""Dataset wrappers that give an attack (or the retrained model) its images.

Both wrap *any* mmdet dataset config (``CocoDataset``, a custom one, ...):
the inner dataset is built through ``DATASETS`` with the config's own
pipeline and ``metainfo``, so labels keep the detector's numbering, and the
wrapper only decides which entries of its data list are served and which
objects they keep. Like mmengine's ``RepeatDataset`` they are plain objects
(not ``BaseDataset`` subclasses): the wrapper holds a list of indices into
the inner dataset, whose (serialized) data list stays where mmengine put
it, so dataloader workers do not copy Python dicts.

* :class:`AttackSubset`: ``mode='retain_only'`` (images showing none of the
  forgotten classes) or ``mode='k_shot'`` (``k`` images per forgotten
  class, all their objects kept).
* :class:`DropClassesDataset`: every image, the given classes' objects
  removed (the retrained "gold standard" learns them as background).
"""
import copy
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmdet.registry import DATASETS

from gslora_det.attacks.subsets import (AttackDataError, drop_instances,
                                        labels_of, select_k_shot,
                                        select_retain_only)

MODES = ('retain_only', 'k_shot')


class _IndexedWrapper:
    """Serves ``self.indices`` of an inner dataset through its pipeline.

    Subclasses set ``self.indices`` in :meth:`_select` and may rewrite an
    entry in :meth:`_rewrite`.

    Args:
        dataset (dict | BaseDataset): The inner dataset or its config.
        lazy_init (bool): Defer loading the annotations to
            :meth:`full_init`. Defaults to False.
        max_refetch (int): Retries with another of *this* subset's images
            when the pipeline drops a sample. Defaults to 1000.
    """

    def __init__(self, dataset: Union[dict, object], lazy_init: bool = False,
                 max_refetch: int = 1000) -> None:
        self.dataset = (DATASETS.build(dataset) if isinstance(dataset, dict)
                        else dataset)
        self.max_refetch = int(max_refetch)
        self.indices: List[int] = []
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        """The inner dataset's metainfo (full class list, same labels)."""
        return copy.deepcopy(self.dataset.metainfo)

    @property
    def classes(self) -> List[str]:
        return list(self.dataset.metainfo['classes'])

    def full_init(self) -> None:
        """Load the inner annotations and choose the served images."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        infos = [self.dataset.get_data_info(i)
                 for i in range(len(self.dataset))]
        self._select(infos)
        self._fully_initialized = True

    def _select(self, infos: List[dict]) -> None:
        raise NotImplementedError

    def _rewrite(self, info: dict) -> dict:
        return info

    def __len__(self) -> int:
        self.full_init()
        return len(self.indices)

    def get_data_info(self, idx: int) -> dict:
        """Entry ``idx`` of the subset (``sample_idx`` is the subset's)."""
        self.full_init()
        info = self._rewrite(self.dataset.get_data_info(self.indices[idx]))
        info['sample_idx'] = idx
        return info

    @property
    def img_ids(self) -> List:
        """``img_id`` of every served image, in subset order."""
        return [self.get_data_info(i).get('img_id')
                for i in range(len(self))]

    def __getitem__(self, idx: int) -> dict:
        # The inner dataset's own __getitem__ would refetch a dropped
        # sample from its *whole* data list, i.e. possibly an image this
        # subset excludes: retry within the subset instead.
        rng = np.random.default_rng(idx)
        for _ in range(self.max_refetch + 1):
            data = self.dataset.pipeline(self.get_data_info(idx))
            if data is not None:
                return data
            idx = int(rng.integers(len(self)))
        raise RuntimeError(f'{type(self).__name__}: the pipeline dropped '
                           f'{self.max_refetch + 1} samples in a row')


@DATASETS.register_module()
class AttackSubset(_IndexedWrapper):
    """The training images a recovery attack may use.

    Args:
        dataset (dict | BaseDataset): The detector config's training
            dataset (config or built).
        mode (str): ``'retain_only'``: every image that shows none of
            ``forget_classes`` nor ``exclude_classes`` (crowd objects
            count); ``'k_shot'``: ``k`` images per class of
            ``forget_classes`` (see :func:`~gslora_det.attacks.subsets.
            select_k_shot`), with all their objects.
        forget_classes (Sequence[str]): The forgotten classes (names).
        k (int, optional): Images per forgotten class (``k_shot`` only).
        seed (int): Sampling seed of ``k_shot``. Defaults to 0.
        exclude_classes (Sequence[str]): Further classes a retain-only
            image must not show (e.g. classes forgotten earlier).
            Defaults to ().
        **kwargs: ``lazy_init``, ``max_refetch``.

    Raises:
        AttackDataError: unknown class names, a class with fewer than ``k``
            images, or no retain-only image.
    """

    def __init__(self, dataset, mode: str,
                 forget_classes: Sequence[str],
                 k: Optional[int] = None, seed: int = 0,
                 exclude_classes: Sequence[str] = (), **kwargs) -> None:
        if mode not in MODES:
            raise AttackDataError(f'mode must be one of {MODES}, got '
                                  f'{mode!r}')
        if mode == 'k_shot' and k is None:
            raise AttackDataError("mode='k_shot' needs k (images per "
                                  'forgotten class)')
        if not forget_classes:
            raise AttackDataError('forget_classes is empty: name the '
                                  'forgotten classes')
        self.mode, self.k, self.seed = mode, k, int(seed)
        self.forget_classes = list(forget_classes)
        self.exclude_classes = list(exclude_classes)
        #: ``{class name: [img_id, ...]}`` of a k-shot subset.
        self.img_ids_by_class: Dict[str, List] = {}
        super().__init__(dataset, **kwargs)

    def _select(self, infos: List[dict]) -> None:
        classes = self.classes
        forget = labels_of(self.forget_classes, classes)
        if self.mode == 'retain_only':
            exclude = forget + labels_of(self.exclude_classes, classes)
            self.indices = select_retain_only(infos, exclude)
            if not self.indices:
                shown = self.forget_classes + self.exclude_classes
                raise AttackDataError(
                    f'no training image is free of {shown}: every one of '
                    f'the {len(infos)} images shows a forgotten class, so '
                    'a retain-only attack has no data. Drop retain_only '
                    'from --attacks')
            return
        by_label = select_k_shot(infos, forget, self.k, self.seed,
                                 names=dict(enumerate(classes)))
        self.indices = sorted(i for idx in by_label.values() for i in idx)
        self.img_ids_by_class = {
            classes[label]: [infos[i].get('img_id') for i in idx]
            for label, idx in by_label.items()}


@DATASETS.register_module()
class DropClassesDataset(_IndexedWrapper):
    """Every training image, without the objects of ``drop_classes``.

    Images are kept (also those left without objects): the dropped classes
    become background, exactly what a model retrained without them sees.
    ``metainfo`` and labels are unchanged, so the retrained detector has the
    same ``num_classes`` and output channels as the one it is compared with.

    Args:
        dataset (dict | BaseDataset): The training dataset.
        drop_classes (Sequence[str]): Names of the classes to remove.
        **kwargs: ``lazy_init``, ``max_refetch``.
    """

    def __init__(self, dataset, drop_classes: Sequence[str],
                 **kwargs) -> None:
        if not drop_classes:
            raise AttackDataError('drop_classes is empty: name the classes '
                                  'to retrain without')
        self.drop_classes = list(drop_classes)
        self._drop: List[int] = []
        self.num_dropped = 0  #: objects removed from the data list
        super().__init__(dataset, **kwargs)

    def _select(self, infos: List[dict]) -> None:
        self._drop = labels_of(self.drop_classes, self.classes)
        self.indices = list(range(len(infos)))
        kept = sum(len(i['instances']) for i in drop_instances(infos,
                                                               self._drop))
        self.num_dropped = sum(len(i.get('instances', ())) for i in infos) \
            - kept

    def _rewrite(self, info: dict) -> dict:
        return drop_instances([info], self._drop)[0]
