"""``ForgettingMetric`` plus the confusion rows of the forgotten classes.

Everything ``ForgettingMetric`` reports (forget / retain / old mAP, per
class AP, residual detection) is kept as is; the rows are added from the
same ground truth (the annotation file, crowd and ignored boxes left out)
and the same predictions, so they agree with the residual numbers.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmdet.registry import METRICS
from terminaltables import AsciiTable

from gslora_det.attacks.confusion import confusion_rows
from gslora_det.evaluation.forgetting_metric import ForgettingMetric


@METRICS.register_module()
class AttackMetric(ForgettingMetric):
    """``ForgettingMetric`` that also computes confusion rows.

    The rows are not metric values (a nested dict would be logged as one
    long line by mmengine's ``LoggerHook``): they are kept in
    :attr:`confusion` of the metric on the process that evaluates (rank
    0), and logged as a table.

    Args:
        confusion_score_thr (float): Score threshold of the rows. Defaults
            to 0.3.
        **kwargs: ``ForgettingMetric`` arguments; ``residual_iou_thr`` is
            also the rows' IoU.
    """

    def __init__(self, confusion_score_thr: float = 0.3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.confusion_score_thr = float(confusion_score_thr)
        #: ``dict(score_thr, iou_thr, rows)`` after an evaluation, with
        #: rows of :func:`~gslora_det.attacks.confusion.confusion_rows` for
        #: the forget classes, then the previously forgotten ones.
        self.confusion: Optional[Dict] = None

    def _residual(self, out: Dict[str, float], anns: List[dict],
                  preds: Sequence[dict], set_ids: Dict[str, List[int]],
                  logger) -> None:
        """Residual detection (``ForgettingMetric``), then the rows."""
        super()._residual(out, anns, preds, set_ids, logger)
        classes = list(self.dataset_meta['classes'])
        label_of = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        gts = {i: ([], []) for i in self.img_ids}
        for a in anns:
            if a['image_id'] in gts:
                x, y, w, h = a['bbox']
                gts[a['image_id']][0].append([x, y, x + w, y + h])
                gts[a['image_id']][1].append(label_of[a['category_id']])
        gt_by_img = {i: (np.asarray(b, dtype=np.float64).reshape(-1, 4),
                         np.asarray(c, dtype=np.int64))
                     for i, (b, c) in gts.items()}
        preds_by_img = {p['img_id']: (p['bboxes'], p['scores'],
                                      p['labels'].astype(int))
                        for p in preds}
        rows = [label_of[c] for c in set_ids['forget'] + set_ids['old']]
        self.confusion = dict(
            score_thr=self.confusion_score_thr,
            iou_thr=self.residual_iou_thr,
            rows=confusion_rows(gt_by_img, preds_by_img, rows, classes,
                                self.confusion_score_thr,
                                self.residual_iou_thr))
        table = [['class', '#GT', f'detected as (score >= '
                  f'{self.confusion_score_thr:g}), %']]
        for name, row in self.confusion['rows'].items():
            parts = [f'{col} {100 * frac:.1f}' for col, frac in
                     row['fractions'].items() if frac]
            table.append([name, row['num_gt'], ', '.join(parts) or '-'])
        if len(table) > 1:
            logger.info('Confusion rows of the forgotten classes:\n' +
                        AsciiTable(table).table)
