"""Which training images an attack may use (pure functions on a data list).

The lists are mmdet ``data_list`` entries (``dict(img_id=..., instances=[
dict(bbox=..., bbox_label=..., ignore_flag=...), ...])``); labels are the
detector's own numbering (``metainfo.classes[label]``) and are never
renumbered.

* :func:`select_retain_only`: images showing *none* of the given classes.
  An image with a forgotten object in it would, after the object is
  dropped, teach "this is background", i.e. more forgetting, and after the
  object is kept, teach the class back: neither is a retain-set attack.
* :func:`select_k_shot`: exactly ``k`` images per class, seeded.
* :func:`drop_instances`: every image, without the given classes' objects
  (the retrained "gold standard" sees them as background).
"""
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np


class AttackDataError(ValueError):
    """The training set cannot give an attack the images it needs; the
    message says which and how to fix the command."""


def labels_of(names: Sequence[str], classes: Sequence[str]) -> List[int]:
    """The detector's label of each class name.

    Args:
        names (Sequence[str]): Class names.
        classes (Sequence[str]): The detector's ordered class list
            (``metainfo.classes``; label ``i`` is ``classes[i]``).

    Returns:
        list[int]: ``classes.index(name)`` for each name.

    Raises:
        AttackDataError: a name is not one of ``classes``.
    """
    classes = list(classes)
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise AttackDataError(f'unknown class name(s) {unknown}; valid '
                              f'names: {classes}')
    return [classes.index(n) for n in names]


def image_labels(info: Mapping, with_ignored: bool = True) -> set:
    """Labels of the objects of one ``data_list`` entry.

    Args:
        info (Mapping): A ``data_list`` entry.
        with_ignored (bool): Count ignored (crowd) objects too. Defaults to
            True: a crowd of a forgotten class is still in the picture.
    """
    return {int(ins['bbox_label']) for ins in info.get('instances', ())
            if with_ignored or not ins.get('ignore_flag', 0)}


def select_retain_only(data_list: Sequence[Mapping],
                       exclude_labels: Sequence[int]) -> List[int]:
    """Indices of the images that show none of ``exclude_labels``.

    Images without any object stay: they are retain data (background).

    Args:
        data_list (Sequence[Mapping]): The training set's entries.
        exclude_labels (Sequence[int]): The forgotten classes (this task's
            and earlier ones').

    Returns:
        list[int]: Indices into ``data_list``, ascending.
    """
    exclude = {int(x) for x in exclude_labels}
    return [i for i, info in enumerate(data_list)
            if not image_labels(info) & exclude]


def select_k_shot(data_list: Sequence[Mapping], labels: Sequence[int],
                  k: int, seed: int = 0,
                  names: Optional[Mapping[int, str]] = None
                  ) -> Dict[int, List[int]]:
    """``k`` images per class, each image drawn for one class only.

    Classes are served in the order given; an image showing two of them
    counts for the first one it is drawn for, so the attack sees exactly
    ``k × len(labels)`` distinct images (the other class's objects in it
    stay labelled: the attacker has the whole picture). Only non-ignored
    objects make an image eligible. The draw for each class is a
    permutation seeded by ``(seed, label)`` truncated to ``k``, so a
    larger ``k`` with the same seed extends, not replaces, the first
    class's images.

    Args:
        data_list (Sequence[Mapping]): The training set's entries.
        labels (Sequence[int]): The classes (forgotten ones), in order.
        k (int): Images per class, >= 1.
        seed (int): Sampling seed. Defaults to 0.
        names (Mapping[int, str], optional): Label -> class name, for the
            error message.

    Returns:
        dict[int, list[int]]: Label -> indices into ``data_list``
        (ascending), in the order of ``labels``.

    Raises:
        AttackDataError: ``k < 1``, or a class has fewer than ``k`` images
            left.
    """
    if int(k) != k or k < 1:
        raise AttackDataError(f'k must be a positive integer, got {k}')
    names = names or {}
    taken: set = set()
    out: Dict[int, List[int]] = {}
    for label in labels:
        having = [i for i, info in enumerate(data_list)
                  if label in image_labels(info, with_ignored=False)]
        free = [i for i in having if i not in taken]
        name = names.get(label, f'label {label}')
        if len(free) < k:
            raise AttackDataError(
                f'class {name!r} has {len(free)} training image(s) to draw '
                f'from ({len(having)} show it, {len(having) - len(free)} '
                f'already drawn for an earlier class) but k={k}: pass '
                f'--k values <= {len(free)}')
        rng = np.random.default_rng([int(seed), int(label)])
        picked = sorted(np.asarray(free)[rng.permutation(len(free))[:k]]
                        .tolist())
        taken.update(picked)
        out[int(label)] = picked
    return out


def drop_instances(data_list: Sequence[Mapping],
                   drop_labels: Sequence[int]) -> List[dict]:
    """Every image, without the objects of ``drop_labels``.

    Args:
        data_list (Sequence[Mapping]): The training set's entries.
        drop_labels (Sequence[int]): Classes that become background.

    Returns:
        list[dict]: Shallow copies with filtered ``instances``; images left
        without objects are kept (they teach background).
    """
    drop = {int(x) for x in drop_labels}
    return [{**info, 'instances': [ins for ins in info.get('instances', ())
                                   if int(ins['bbox_label']) not in drop]}
            for info in data_list]
