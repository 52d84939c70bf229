"""Residual detection: are "forgotten" objects still found by the detector?

mAP alone can hide a failed unlearning: a forgotten "person" that is now
detected as "bear" lowers the person AP but is still a detection a user would
see. :func:`residual_detection` therefore reports, for the ground-truth
objects of a class set, how many are still covered by a confident detection
of their own class (``own``) and of any class at all (``any``).
"""
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

GtDict = Mapping[object, Tuple[np.ndarray, np.ndarray]]
PredDict = Mapping[object, Tuple[np.ndarray, np.ndarray, np.ndarray]]


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of ``xyxy`` boxes.

    Written by hand in numpy because the inputs are numpy arrays:
    ``mmdet.structures.bbox.bbox_overlaps`` needs tensors and the numpy one in
    ``mmdet.evaluation.functional`` loops over boxes. Areas are ``w * h``
    (no ``+1``), as in pycocotools.

    Args:
        boxes1 (np.ndarray): Boxes, shape (N, 4), ``x1, y1, x2, y2``.
        boxes2 (np.ndarray): Boxes, shape (M, 4), ``x1, y1, x2, y2``.

    Returns:
        np.ndarray: IoU matrix, shape (N, M), float64.
    """
    b1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    area1 = (b1[:, 2] - b1[:, 0]).clip(0) * (b1[:, 3] - b1[:, 1]).clip(0)
    area2 = (b2[:, 2] - b2[:, 0]).clip(0) * (b2[:, 3] - b2[:, 1]).clip(0)
    lt = np.maximum(b1[:, None, :2], b2[None, :, :2])  # (N, M, 2)
    rb = np.minimum(b1[:, None, 2:], b2[None, :, 2:])  # (N, M, 2)
    wh = (rb - lt).clip(0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / np.maximum(union, np.finfo(np.float64).eps)


def _thr_key(thr: float) -> str:
    """Format a score threshold for a result key, e.g. ``0.3 -> '0.3'``."""
    return f'{float(thr):g}'


def residual_detection(gt_boxes_by_img: GtDict,
                       preds_by_img: PredDict,
                       classes: Sequence[int],
                       score_thrs: Sequence[float] = (0.1, 0.3, 0.5),
                       iou_thr: float = 0.5) -> Dict[str, Optional[float]]:
    """Fraction of ground-truth objects of ``classes`` still detected.

    A GT object counts as detected at threshold ``τ`` when at least one
    detection with score ``>= τ`` overlaps it with IoU ``>= iou_thr``; there
    is no one-to-one matching, because the question is whether the object is
    still visible to the user, not whether the detection would be a TP.

    Args:
        gt_boxes_by_img (Mapping): ``img_id -> (boxes, labels)`` with boxes
            ``xyxy`` of shape (N, 4) and labels of shape (N,). Only images in
            this mapping are counted; ignored/crowd boxes should be left out
            by the caller.
        preds_by_img (Mapping): ``img_id -> (boxes, scores, labels)`` with
            boxes ``xyxy`` of shape (M, 4), scores (M,) and labels (M,), in the
            same label space as the GT. A missing image has no detections.
        classes (Sequence[int]): Labels of the objects to check.
        score_thrs (Sequence[float]): Score thresholds ``τ``.
            Defaults to (0.1, 0.3, 0.5).
        iou_thr (float): Minimum IoU for a detection to cover a GT box.
            Defaults to 0.5.

    Returns:
        dict: ``num_gt`` (int, the number of GT objects of ``classes``) and,
        for each ``τ``, ``own@τ`` (covered by a detection of the same class)
        and ``any@τ`` (covered by a detection of any class), fractions in
        [0, 1]; the fractions are ``None`` when ``num_gt`` is 0 (empty
        ``classes`` or no such objects).
    """
    classes = np.asarray(list(classes), dtype=np.int64)
    # Per GT object, the best score among covering detections (-inf: none);
    # "detected at τ" is then simply best >= τ, for every τ at once.
    best_own, best_any = [], []
    for img_id, (gt_boxes, gt_labels) in gt_boxes_by_img.items():
        gt_labels = np.asarray(gt_labels).reshape(-1)
        keep = np.isin(gt_labels, classes)
        if not keep.any():
            continue
        gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)[keep]
        gt_labels = gt_labels[keep]
        if img_id in preds_by_img:
            boxes, scores, labels = preds_by_img[img_id]
        else:
            boxes, scores, labels = np.zeros((0, 4)), [], []
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(labels).reshape(-1)
        cover = box_iou(gt_boxes, boxes) >= iou_thr  # (K, M)
        same = gt_labels[:, None] == labels[None, :]  # (K, M)
        masked = np.where(cover, scores[None, :], -np.inf)
        if masked.shape[1] == 0:
            masked = np.full((len(gt_labels), 1), -np.inf)
            same = np.zeros_like(masked, dtype=bool)
        best_any.append(masked.max(axis=1))
        best_own.append(np.where(same, masked, -np.inf).max(axis=1))

    num_gt = int(sum(len(b) for b in best_any))
    out: Dict[str, Optional[float]] = {'num_gt': num_gt}
    own = np.concatenate(best_own) if num_gt else None
    any_ = np.concatenate(best_any) if num_gt else None
    for thr in score_thrs:
        key = _thr_key(thr)
        out[f'own@{key}'] = float((own >= thr).mean()) if num_gt else None
        out[f'any@{key}'] = float((any_ >= thr).mean()) if num_gt else None
    return out
