"""One parse of each COCO annotation file per process.

A forgetting task reads its training annotation file up to four times: the
pre-flight checks (structure, class names), then the retain split and the
forget split, each a ``CocoDataset`` that builds its own pycocotools index.
COCO's ``instances_train2017.json`` is ~450 MB and takes ~20 s to parse, on
every rank. :func:`load_coco` keeps the last few parsed files (keyed by path,
size and modification time, so an edited file is re-read) and hands the
same read-only ``COCO`` object to every reader; :func:`clear` drops them once
the datasets are built, so the parsed file does not stay in memory for the
whole run.
"""
import json
import os
import os.path as osp
from collections import OrderedDict
from typing import Tuple

from mmdet.datasets.api_wrappers import COCO

#: Parsed files kept at once (a task reads its train and val files).
MAX_CACHED = 2
_cache: 'OrderedDict[Tuple[str, int, int], COCO]' = OrderedDict()
#: How many times each file was really parsed (tests read it).
parse_counts: dict = {}


def _key(path: str) -> Tuple[str, int, int]:
    st = os.stat(path)
    return osp.realpath(path), st.st_size, st.st_mtime_ns


def load_json(path: str) -> dict:
    """The parsed JSON of a COCO annotation file (shared, do not modify).

    Raises:
        ValueError: the file is not valid JSON (the message names it).
    """
    return load_coco(path).dataset


def load_coco(path: str) -> COCO:
    """A ``COCO`` index of ``path``, parsed at most once per process while
    cached. Callers must treat it as read-only."""
    key = _key(path)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f'{path}: not valid JSON ({err})') from err
    parse_counts[key[0]] = parse_counts.get(key[0], 0) + 1
    coco = COCO()
    coco.dataset = data
    if isinstance(data, dict) and all(
            isinstance(data.get(k), list)
            for k in ('images', 'annotations', 'categories')):
        # A malformed file keeps an empty index: the pre-flight checks
        # report what is wrong with it.
        coco.createIndex()
    _cache[key] = coco
    while len(_cache) > MAX_CACHED:
        _cache.popitem(last=False)
    return coco


class CachedCOCO(COCO):
    """Drop-in for ``CocoDataset.COCOAPI``: ``CachedCOCO(path)`` returns the
    shared index of :func:`load_coco` instead of parsing ``path`` again."""

    def __new__(cls, annotation_file=None, *args, **kwargs):
        if annotation_file is None:
            return COCO()
        return load_coco(annotation_file)

    def __init__(self, *args, **kwargs):  # already built by load_coco
        pass


def clear() -> None:
    """Forget every cached file (after the datasets are built)."""
    _cache.clear()
