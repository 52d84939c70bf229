"""Retain and forget subsets of a COCO-style dataset for one task.

* retain images: images with at least one object of a retained class;
  their annotations keep only retained classes, so objects of forgotten
  classes (this task's and earlier ones') become background;
* forget images: images with at least one object of this task's forget
  classes; their annotations keep only those classes (the reference), or,
  with ``forget_keeps_retained``, the retained classes' objects too, so
  that dense photos do not teach "everything here is background". Each
  sample then carries ``forget_labels`` (metainfo) naming the labels the
  loss treats as forgotten.

Each subset is then sampled (a ratio of its images, or a K-shot set: K
images per class, or the reference's K × classes images) with a fixed
seed. Labels keep the detector's original class indices: the dataset's
``metainfo.classes`` stays the full list (setting it to a subset would
renumber labels). Every sample carries ``forget_role`` ('retain' or
'forget'), which ``PackDetInputs`` puts into the sample's metainfo when
listed in its ``meta_keys`` and the detector's loss splits the batch by.
"""
from typing import List, Optional, Sequence

import numpy as np
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

from gslora_det.data.coco_cache import CachedCOCO

ROLES = ('retain', 'forget')


def restrict_instances(data_list: List[dict],
                       keep_labels: Sequence[int]) -> List[dict]:
    """Keep only instances whose label is in ``keep_labels``; drop images
    left without any non-ignored instance."""
    keep = set(int(k) for k in keep_labels)
    out = []
    for info in data_list:
        instances = [ins for ins in info['instances']
                     if ins['bbox_label'] in keep]
        if any(not ins.get('ignore_flag', 0) for ins in instances):
            out.append({**info, 'instances': instances})
    return out


#: How ``k_shot`` is read (``sample_images``, ``ForgetRetainCocoDataset``).
K_SHOT_MODES = ('per_class', 'union')
#: How ``ratio × n`` becomes an image count.
ROUNDINGS = ('round', 'floor')


def sample_images(data_list: List[dict], ratio: Optional[float],
                  k_shot: Optional[int], keep_labels: Sequence[int],
                  seed: int, k_shot_mode: str = 'per_class',
                  rounding: str = 'round') -> List[dict]:
    """A seeded sample of ``data_list``.

    Args:
        data_list (list[dict]): The role's images (each holds at least one
            object of ``keep_labels``).
        ratio (float, optional): Fraction of the images to keep (at least
            one image; count rounded by ``rounding``). Used when ``k_shot``
            is None; None or >= 1 keeps all.
        k_shot (int, optional): The few-shot size, read by ``k_shot_mode``.
        keep_labels (Sequence[int]): The role's classes.
        seed (int): Sampling seed: the same seed gives the same split.
        k_shot_mode (str): ``'per_class'``: K images containing each class
            of ``keep_labels``, class by class in label order, an image
            counting for the first class it is drawn for (fewer if a class
            has fewer images left). ``'union'``: the reference's few-shot
            set, ``K × len(keep_labels)`` images drawn uniformly from all
            of ``data_list`` (all of them if it holds no more; the
            reference then draws with replacement). Defaults to
            ``'per_class'``.
        rounding (str): ``'round'``: ``round(ratio × n)`` (round half to
            even); ``'floor'``: ``int(n × ratio)``, the reference's count.
            They differ by at most one image. Defaults to ``'round'`` (the
            built-in sequences were calibrated with it).

    Returns:
        list[dict]: The sampled images (no repeats), in their original
        order.
    """
    if k_shot_mode not in K_SHOT_MODES:
        raise ValueError(f'k_shot_mode must be one of {K_SHOT_MODES}, got '
                         f'{k_shot_mode!r}')
    if rounding not in ROUNDINGS:
        raise ValueError(f'rounding must be one of {ROUNDINGS}, got '
                         f'{rounding!r}')
    rng = np.random.default_rng(seed)
    if k_shot is not None and k_shot_mode == 'union':
        count = k_shot * len(set(keep_labels))
        if count >= len(data_list):
            return list(data_list)
        picked = rng.choice(len(data_list), size=count, replace=False)
        return [data_list[i] for i in sorted(picked.tolist())]
    if k_shot is not None:
        chosen = set()
        for label in sorted(set(keep_labels)):
            having = [i for i, info in enumerate(data_list)
                      if any(ins['bbox_label'] == label
                             for ins in info['instances'])]
            free = [i for i in having if i not in chosen]
            take = min(k_shot, len(free))
            chosen.update(rng.choice(free, size=take, replace=False)
                          .tolist() if take else [])
        return [data_list[i] for i in sorted(chosen)]
    if ratio is None or ratio >= 1:
        return data_list
    # The reference: int(num_img_this_phase * args.mem_rate), i.e. floor
    # (0 there would leave an empty set; here at least one image).
    count = (int(len(data_list) * ratio) if rounding == 'floor' else
             int(round(ratio * len(data_list))))
    count = max(1, count)
    picked = rng.choice(len(data_list), size=count, replace=False)
    return [data_list[i] for i in sorted(picked.tolist())]


def check_split_args(role: str, sample_ratio: Optional[float],
                     k_shot: Optional[int], k_shot_mode: str,
                     sample_rounding: str) -> None:
    """Refuse a split setting out of range, naming it and its values.

    Raises:
        ValueError: the first bad setting.
    """
    if role not in ROLES:
        raise ValueError(f'role must be one of {ROLES}, got {role!r}')
    if sample_ratio is not None and not 0 < sample_ratio <= 1:
        raise ValueError(f'sample_ratio must be in (0, 1], got '
                         f'{sample_ratio}')
    if k_shot is not None and k_shot <= 0:
        raise ValueError(f'k_shot must be a positive integer, got '
                         f'{k_shot}')
    if k_shot_mode not in K_SHOT_MODES:
        raise ValueError(f'k_shot_mode must be one of {K_SHOT_MODES}, '
                         f'got {k_shot_mode!r}')
    if sample_rounding not in ROUNDINGS:
        raise ValueError(f'sample_rounding must be one of {ROUNDINGS}, '
                         f'got {sample_rounding!r}')


class RoleSplitMixin:
    """Which labels a role keeps, and the draw of its images: shared by
    :class:`ForgetRetainCocoDataset` and the dataset wrapper
    :class:`~gslora_det.data.forget_retain_split.ForgetRetainSplit`.

    The host sets ``metainfo['classes']`` (the detector's full list),
    ``role``, ``forget_classes``, ``previously_forgotten``,
    ``forget_keeps_old`` and ``forget_keeps_retained``.
    """

    def role_labels(self) -> List[int]:
        """Label indices whose objects qualify an image for this role."""
        classes = list(self.metainfo['classes'])
        for name in self.forget_classes + self.previously_forgotten:
            if name not in classes:
                raise ValueError(f'unknown class {name!r}; valid names are '
                                 f'{classes}')
        if self.role == 'forget':
            return self.forgotten_labels()
        gone = set(self.forget_classes + self.previously_forgotten)
        return [i for i, n in enumerate(classes) if n not in gone]

    def forgotten_labels(self) -> List[int]:
        """Labels the forget loss treats as forgotten."""
        classes = list(self.metainfo['classes'])
        names = self.forget_classes + (self.previously_forgotten
                                       if self.forget_keeps_old else ())
        return [classes.index(n) for n in names]

    def kept_labels(self) -> List[int]:
        """Labels whose objects stay in this role's annotations."""
        if self.role == 'forget' and self.forget_keeps_retained:
            classes = list(self.metainfo['classes'])
            dropped = set() if self.forget_keeps_old else set(
                self.previously_forgotten)
            return [i for i, n in enumerate(classes) if n not in dropped]
        return self.role_labels()

    def draw_role(self, data_list: List[dict], ratio: Optional[float],
                  k_shot: Optional[int], k_shot_mode: str, seed: int,
                  rounding: str, source: str, tag_all: bool) -> List[dict]:
        """This role's images of ``data_list``, their annotations kept to
        :meth:`kept_labels`, sampled and tagged: ``forget_role``, and
        ``forget_labels`` when ``tag_all``.

        Raises:
            ValueError: no image of ``source`` holds the role's classes.
        """
        role = self.role_labels()
        labels = set(role)
        # Images qualify by the role's classes; annotations may keep more.
        qualifying = [info for info in data_list if any(
            ins['bbox_label'] in labels and not ins.get('ignore_flag', 0)
            for ins in info['instances'])]
        restricted = restrict_instances(qualifying, self.kept_labels())
        if not restricted:
            raise ValueError(
                f'the {self.role} subset is empty: no image of {source} '
                'holds any of the classes '
                f'{[self.metainfo["classes"][i] for i in role]}')
        sampled = sample_images(restricted, ratio, k_shot, role, seed,
                                k_shot_mode=k_shot_mode, rounding=rounding)
        forgotten = tuple(self.forgotten_labels())
        for info in sampled:
            info['forget_role'] = self.role
            if tag_all:
                info['forget_labels'] = forgotten
        return sampled


@DATASETS.register_module()
class ForgetRetainCocoDataset(RoleSplitMixin, CocoDataset):
    """One role's subset (retain or forget) of a COCO-format dataset.

    Args:
        role (str): ``'retain'`` or ``'forget'``.
        forget_classes (Sequence[str]): This task's forget classes (names).
        previously_forgotten (Sequence[str]): Classes forgotten by earlier
            tasks. Defaults to ().
        sample_ratio (float, optional): Fraction of the role's images to
            keep. Defaults to 0.1 (the reference's 10 % replay).
        k_shot (int, optional): If set, a few-shot sample instead (see
            ``k_shot_mode``). Defaults to None.
        k_shot_mode (str): ``'per_class'``: K images containing each of the
            role's classes; ``'union'``: K × (number of the role's classes)
            images drawn from all the role's images, as the reference's
            ``--few_shot`` does. Defaults to ``'per_class'``.
        sample_seed (int): Sampling seed. Defaults to 0.
        sample_rounding (str): How ``sample_ratio × n`` becomes a count:
            ``'round'`` or ``'floor'`` (the reference's ``int(n × rate)``).
            Defaults to ``'round'``.
        forget_keeps_old (bool): The forget subset also holds the classes
            forgotten by earlier tasks, so that the forget loss keeps them
            forgotten (not in the reference, whose forget data holds only
            this task's classes). Defaults to False.
        forget_keeps_retained (bool): Forget images also keep their
            retained-class objects, and each sample carries
            ``forget_labels``, which ``PackDetInputs`` must list in its
            ``meta_keys``. Defaults to False (the reference).
        **kwargs: ``CocoDataset`` arguments (``metainfo.classes`` must be
            the detector's full class list).
    """

    # The retain and forget splits (and the pre-flight checks) share one
    # parse of the annotation file per process.
    COCOAPI = CachedCOCO

    def __init__(self,
                 *args,
                 role: str = 'retain',
                 forget_classes: Sequence[str] = (),
                 previously_forgotten: Sequence[str] = (),
                 sample_ratio: Optional[float] = 0.1,
                 k_shot: Optional[int] = None,
                 k_shot_mode: str = 'per_class',
                 sample_seed: int = 0,
                 sample_rounding: str = 'round',
                 forget_keeps_old: bool = False,
                 forget_keeps_retained: bool = False,
                 **kwargs) -> None:
        check_split_args(role, sample_ratio, k_shot, k_shot_mode,
                         sample_rounding)
        self.role = role
        self.forget_classes = tuple(forget_classes)
        self.previously_forgotten = tuple(previously_forgotten)
        self.sample_ratio = sample_ratio
        self.k_shot = k_shot
        self.k_shot_mode = k_shot_mode
        self.sample_seed = sample_seed
        self.sample_rounding = sample_rounding
        self.forget_keeps_old = forget_keeps_old
        self.forget_keeps_retained = forget_keeps_retained
        super().__init__(*args, **kwargs)
        if forget_keeps_retained and role == 'forget':
            self._check_packs_forget_labels()

    def _check_packs_forget_labels(self) -> None:
        """Without ``forget_labels`` in the packed metainfo the loss would
        take every object of a forget image as forgotten."""
        for transform in getattr(self.pipeline, 'transforms', []):
            keys = getattr(transform, 'meta_keys', None)
            if keys is not None and 'forget_labels' not in keys:
                raise ValueError(
                    'forget_keeps_retained=True needs each forget '
                    "sample's 'forget_labels': add 'forget_labels' to the "
                    f'meta_keys of {type(transform).__name__} in the '
                    'training pipeline')

    def load_data_list(self) -> List[dict]:
        return self.draw_role(super().load_data_list(), self.sample_ratio,
                              self.k_shot, self.k_shot_mode,
                              self.sample_seed, self.sample_rounding,
                              source=self.ann_file,
                              tag_all=self.forget_keeps_retained)

    def filter_data(self) -> List[dict]:
        # load_data_list already kept only images with objects of the
        # role's classes; mmdet's filter_cfg must not drop any more, or the
        # seeded sample would not be the split that was drawn.
        return self.data_list
