"""Confusion rows: what the detector calls a forgotten object.

mAP and residual detection say *whether* a forgotten object is still found;
a confusion row says *as what*. For each ground-truth object of a
forgotten class, at a score threshold ``τ`` (0.3 in the reports):

* its own class, if a detection of its own class with score ``>= τ``
  covers it (IoU ``>= iou_thr``); so the own column equals residual
  ``own@τ`` of :func:`~gslora_det.evaluation.residual.residual_detection`;
* otherwise the class of the highest-scoring covering detection of
  another class (a "person" now reported as "bear" is still a detection);
* otherwise :data:`MISSED` (background, what a retrained model does), so
  ``1 - missed`` equals residual ``any@τ``.

Each object lands in exactly one column, so a row sums to its object count
(100 %). Written by hand because neither pycocotools nor mmdet counts
objects this way: mmdet's ``tools/analysis_tools/confusion_matrix.py`` is a
script over a results pickle that counts every (object, detection) pair
above the thresholds, so an object under three boxes counts three times
and a row does not read as "what share of the objects".
"""
import math
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from gslora_det.evaluation.residual import GtDict, PredDict, box_iou

#: Column of the objects no confident detection covers.
MISSED = 'missed/background'


def confusion_rows(gt_by_img: GtDict, preds_by_img: PredDict,
                   classes: Sequence[int], class_names: Sequence[str],
                   score_thr: float = 0.3,
                   iou_thr: float = 0.5) -> Dict[str, Dict]:
    """Per class of ``classes``, the classes its objects are detected as.

    Args:
        gt_by_img (Mapping): ``img_id -> (boxes, labels)``, boxes ``xyxy``
            of shape (N, 4), labels (N,) in the detector's label space.
            Ignored/crowd boxes should be left out by the caller.
        preds_by_img (Mapping): ``img_id -> (boxes, scores, labels)``,
            shapes (M, 4), (M,), (M,); a missing image has no detections.
        classes (Sequence[int]): Labels of the rows (forgotten classes).
        class_names (Sequence[str]): ``class_names[label]`` names a label.
        score_thr (float): Detections below it are ignored. Defaults to 0.3.
        iou_thr (float): IoU for a detection to cover an object.
            Defaults to 0.5.

    Returns:
        dict: ``{row class name: dict(num_gt=int, counts={column: int},
        fractions={column: float in [0, 1]})}`` in the order of
        ``classes``; columns: the row's own class first, then the other
        classes by count (descending, then name), then :data:`MISSED`.
        The own and missed columns are always there; ``fractions`` are
        None for a class without objects.
    """
    rows = [int(c) for c in classes]
    counts = {c: {} for c in rows}
    for img_id, (gt_boxes, gt_labels) in gt_by_img.items():
        gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
        keep = np.isin(gt_labels, rows)
        if not keep.any():
            continue
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        gt_boxes, gt_labels = gt_boxes[keep], gt_labels[keep]
        boxes, scores, labels = preds_by_img.get(
            img_id, (np.zeros((0, 4)), np.zeros(0), np.zeros(0)))
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        confident = scores >= score_thr
        cover = (box_iou(gt_boxes, boxes) >= iou_thr) & confident[None, :]
        for j, label in enumerate(gt_labels.tolist()):
            hits = cover[j]
            if (hits & (labels == label)).any():
                column = label
            elif hits.any():
                column = int(labels[np.where(hits, scores, -np.inf)
                                    .argmax()])
            else:
                column = MISSED
            counts[label][column] = counts[label].get(column, 0) + 1

    out: Dict[str, Dict] = {}
    for c in rows:
        own = class_names[c]
        named = {(class_names[k] if k != MISSED else MISSED): v
                 for k, v in counts[c].items()}
        others = sorted(((n, v) for n, v in named.items()
                         if n not in (own, MISSED)),
                        key=lambda item: (-item[1], item[0]))
        ordered = {own: named.get(own, 0), **dict(others),
                   MISSED: named.get(MISSED, 0)}
        num_gt = sum(ordered.values())
        out[own] = dict(
            num_gt=num_gt, counts=ordered,
            fractions={k: (v / num_gt if num_gt else None)
                       for k, v in ordered.items()})
    return out


def plot_confusion_rows(rows: Mapping[str, Mapping], path: str,
                        title: Optional[str] = None) -> str:
    """Stacked horizontal bars, one per forgotten class, in percent.

    Args:
        rows (Mapping): :func:`confusion_rows`'s output.
        path (str): Output PNG (written atomically).
        title (str, optional): Figure title.

    Returns:
        str: ``path``.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from gslora_det.io_utils import atomic_path
    names = list(rows)
    columns = []  # every column once, own classes first
    for name in names:
        for col in rows[name]['counts']:
            if col != MISSED and col not in columns:
                columns.append(col)
    palette = colormaps['tab20'].colors
    colour = {c: palette[i % len(palette)] for i, c in enumerate(columns)}
    colour[MISSED] = '#d9d9d9'
    fig = Figure(figsize=(7.5, 0.6 * len(names) + 1.6))
    ax = fig.add_subplot()
    for y, name in enumerate(names):
        left = 0.0
        fractions = rows[name]['fractions']
        for col in columns + [MISSED]:
            value = fractions.get(col)
            if not value:
                continue
            width = 100.0 * value
            ax.barh(y, width, left=left, color=colour[col],
                    edgecolor='white', hatch='//' if col == name else '',
                    label=col)
            if width >= 8:
                ax.text(left + width / 2, y, f'{width:.0f}%', ha='center',
                        va='center', fontsize=8)
            left += width
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([f'{n} ({rows[n]["num_gt"]} obj.)' for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel('ground-truth objects detected as (%)')
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, ncol=min(4, max(
        1, math.ceil(len(unique) / 2))), loc='upper center',
        bbox_to_anchor=(0.5, -0.25), frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=110, bbox_inches='tight')
    return path
