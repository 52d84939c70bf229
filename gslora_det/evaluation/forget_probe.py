"""The probes: is the request carried out, and what do the retained pay?

The controller (:mod:`gslora_det.controller`) needs, during training, the
numbers the bar judges on validation, but measured on *training* images:

* :func:`probe_forget_score` on training images of the forgotten classes
  (held-out ones first, see the hook): the forgotten classes' mAP, and the
  fractions of forgotten objects still detected as their own class / as
  any class at the residual threshold;
* :func:`probe_class_map` on training images that hold retained classes
  and are not in the replay set (the model never trains on them): the
  retained classes' mAP, the quantity whose drop the bar limits.

Both run the model in eval mode through the detector's *test* pipeline
(deterministic: the training pipeline's random flips and crops would make
the score noisy), shard the images over the ranks and all-gather the raw
results, so every rank computes the same numbers.
"""
import contextlib
import io
from typing import Dict, List, Sequence

import numpy as np
import torch
from mmengine.dataset import Compose, pseudo_collate
from mmengine.dist import all_gather_object, get_rank, get_world_size

from gslora_det.evaluation.residual import residual_detection


def class_gt(infos: Sequence[dict], labels: Sequence[int]
             ) -> Dict[int, tuple]:
    """``k -> (boxes (n, 4) xyxy, labels (n,))`` of the objects of classes
    ``labels`` in each data info ``k`` (original image coordinates,
    non-ignored)."""
    keep = set(int(x) for x in labels)
    out = {}
    for k, info in enumerate(infos):
        inst = [i for i in info['instances']
                if i['bbox_label'] in keep and not i.get('ignore_flag', 0)]
        out[k] = (np.asarray([i['bbox'] for i in inst],
                             dtype=np.float64).reshape(-1, 4),
                  np.asarray([i['bbox_label'] for i in inst], dtype=np.int64))
    return out


def class_map(gt: Dict[int, tuple], preds: Dict[int, tuple],
              labels: Sequence[int]) -> float:
    """COCO mAP (IoU .50:.95, pycocotools) of the classes ``labels`` on the
    probe images; 0 when there is no such object. By hand only the
    in-memory COCO structures: pycocotools evaluates."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    labels = sorted(set(int(x) for x in labels))
    images, anns, dets = [], [], []
    for k, (boxes, lab) in gt.items():
        images.append(dict(id=k + 1, width=1, height=1))
        for b, c in zip(boxes, lab):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(dict(id=len(anns) + 1, image_id=k + 1,
                             category_id=int(c) + 1, iscrowd=0, area=w * h,
                             bbox=[b[0], b[1], w, h]))
        pb, ps, pl = preds.get(k, (np.zeros((0, 4)), [], []))
        for b, s, c in zip(pb, ps, pl):
            if int(c) in labels:
                dets.append(dict(image_id=k + 1, category_id=int(c) + 1,
                                 score=float(s), bbox=[b[0], b[1], b[2] - b[0],
                                                       b[3] - b[1]]))
    if not anns:
        return 0.0
    if not dets:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints
        coco = COCO()
        coco.dataset = dict(images=images, annotations=anns,
                            categories=[dict(id=c + 1) for c in labels])
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), 'bbox')
        ev.params.catIds = [c + 1 for c in labels]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return max(0.0, float(ev.stats[0]))


@torch.no_grad()
def _predict(model, pipeline, infos: List[dict], batch_size: int
             ) -> List[tuple]:
    out = []
    for start in range(0, len(infos), batch_size):
        batch = pseudo_collate([pipeline(dict(info)) for info in
                                infos[start:start + batch_size]])
        for sample in model.test_step(batch):
            pred = sample.pred_instances
            out.append((pred.bboxes.cpu().numpy().astype(np.float64),
                        pred.scores.cpu().numpy(),
                        pred.labels.cpu().numpy()))
    return out


def _predict_all(model, infos: Sequence[dict], test_pipeline: Sequence[dict],
                 batch_size: int) -> Dict[int, tuple]:
    """``k -> (boxes, scores, labels)`` for every info ``k``: this rank
    predicts its share, then the shares are all-gathered."""
    rank, world = get_rank(), get_world_size()
    mine = list(range(rank, len(infos), world))
    was_training = model.training
    model.eval()
    try:
        preds = _predict(model, Compose(list(test_pipeline)),
                         [infos[k] for k in mine], batch_size)
    finally:
        model.train(was_training)
    gathered = {}
    for part in all_gather_object(list(zip(mine, preds))):
        gathered.update(dict(part))
    return gathered


def probe_class_map(model, infos: Sequence[dict], labels: Sequence[int],
                    test_pipeline: Sequence[dict], batch_size: int = 8
                    ) -> float:
    """COCO mAP (0-1) of the classes ``labels`` on the images ``infos``
    (the retained classes on held-out training images, for the
    controller's guard); identical on every rank."""
    preds = _predict_all(model, infos, test_pipeline, batch_size)
    return class_map(class_gt(infos, labels), preds, labels)


def probe_forget_score(model, infos: Sequence[dict], labels: Sequence[int],
                       test_pipeline: Sequence[dict], score_thr: float = 0.3,
                       iou_thr: float = 0.5, batch_size: int = 8
                       ) -> Dict[str, float]:
    """The forget score of ``model`` on the training forget images.

    Args:
        model: The (possibly wrapped) detector; put back in train mode.
        infos (Sequence[dict]): Data infos of the probe images (the forget
            split's, with ``img_path`` and ``instances``).
        labels (Sequence[int]): The forgotten labels.
        test_pipeline (Sequence[dict]): The detector's test pipeline.
        score_thr (float): Residual-detection threshold.
        iou_thr (float): IoU at which a detection covers an object.
        batch_size (int): Images per forward pass.

    Returns:
        dict: ``map`` (0-1), ``own`` and ``any`` (fractions) and
        ``objects`` (forgotten objects probed); identical on every rank.
    """
    gathered = _predict_all(model, infos, test_pipeline, batch_size)
    gt = class_gt(infos, labels)
    res = residual_detection(gt, gathered, labels, score_thrs=(score_thr,),
                             iou_thr=iou_thr)
    key = f'{float(score_thr):g}'
    return dict(map=class_map(gt, gathered, labels),
                own=res[f'own@{key}'] or 0.0, any=res[f'any@{key}'] or 0.0,
                objects=float(res['num_gt']))
