"""COCO box metric split by forget / retained / previously forgotten classes.

``ForgettingMetric`` extends mmdet's ``CocoMetric`` (same ``process``, same GT
handling, same COCOeval parameters) and reports what continual forgetting
needs: AP on the classes being forgotten, on the classes to retain and on the
classes forgotten in earlier tasks, per-class AP, residual detection of the
forgotten objects and the GS-LoRA harmonic mean ``H``.
"""
import contextlib
import io
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmdet.datasets.api_wrappers import COCO, COCOeval, COCOevalMP
from mmdet.evaluation import CocoMetric
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.fileio import load
from mmengine.logging import MMLogger
from terminaltables import AsciiTable

from gslora_det.evaluation.hmean import h_mean
from gslora_det.evaluation.residual import residual_detection


def _names(value, arg: str) -> tuple:
    """Normalise a class-name list; a bare string would split into chars."""
    value = (value, ) if isinstance(value, str) else tuple(value)
    if len(set(value)) != len(value):
        raise ValueError(f'{arg} lists a class twice: {list(value)}')
    return value


@METRICS.register_module()
class ForgettingMetric(CocoMetric):
    """Box AP for forget / retained / previously forgotten class sets.

    Output keys (python floats, 0-1 scale, prefixed ``forgetting/`` by
    :meth:`evaluate`): ``mAP_all``, ``mAP50_all`` (COCO's -1 without any
    GT); ``mAP_<S>``, ``mAP50_<S>`` for ``S`` in ``forget``, ``retain``,
    ``old`` (S's categories over the images having a GT box of S; omitted
    when S is empty or has no GT); ``AP_<class name>`` over all images
    (omitted when the class has no GT); ``residual_num_gt``,
    ``residual_own@τ``, ``residual_any@τ`` of the forget classes and
    ``residual_old_*`` of the old ones (:func:`~gslora_det.evaluation.
    residual.residual_detection`; omitted when the set has no GT);
    ``h_mean`` when ``before['mAP_forget']`` is given. Class names map to
    COCO category ids by name, through the annotation file's categories.

    Args:
        forget_classes (Sequence[str]): Names of the classes forgotten in
            this task. Defaults to ().
        previously_forgotten (Sequence[str]): Names of the classes forgotten
            in earlier tasks. Defaults to ().
        retained_classes (Sequence[str], optional): Names of the classes to
            retain. None means every dataset class in neither list above.
            Defaults to None.
        before (dict, optional): Metrics of the model before this task; when
            it holds ``mAP_forget`` (or ``forgetting/mAP_forget``) the
            output includes ``h_mean``. Defaults to None.
        residual_score_thrs (Sequence[float]): Score thresholds of the
            residual detection. Defaults to (0.1, 0.3, 0.5).
        residual_iou_thr (float): IoU for a detection to cover a GT box in
            the residual detection. Defaults to 0.5.
        metric (str | Sequence[str]): Only ``'bbox'`` is supported.
            Defaults to 'bbox'.
        **kwargs: Passed to ``CocoMetric`` (``ann_file``, ``iou_thrs``,
            ``proposal_nums`` (COCOeval maxDets), ``format_only``,
            ``outfile_prefix``, ``backend_args``, ``use_mp_eval``, ...).
            ``classwise`` and ``metric_items`` have no effect: per-class AP
            is always reported.
    """
    default_prefix: Optional[str] = 'forgetting'

    def __init__(self,
                 forget_classes: Sequence[str] = (),
                 previously_forgotten: Sequence[str] = (),
                 retained_classes: Optional[Sequence[str]] = None,
                 before: Optional[dict] = None,
                 residual_score_thrs: Sequence[float] = (0.1, 0.3, 0.5),
                 residual_iou_thr: float = 0.5,
                 metric='bbox',
                 **kwargs) -> None:
        metrics = [metric] if isinstance(metric, str) else list(metric)
        if metrics != ['bbox']:
            raise ValueError('ForgettingMetric supports only metric="bbox", '
                             f'got {metric!r}')
        if before is not None and not isinstance(before, dict):
            raise ValueError(f'before must be a dict or None, got {before!r}')
        self.forget_classes = _names(forget_classes, 'forget_classes')
        self.previously_forgotten = _names(previously_forgotten,
                                           'previously_forgotten')
        self.retained_classes = None if retained_classes is None else \
            _names(retained_classes, 'retained_classes')
        # Overlaps are config errors that need no dataset: refuse them now.
        owner: Dict[str, str] = {}
        for arg in ('forget_classes', 'previously_forgotten',
                    'retained_classes'):
            for name in getattr(self, arg) or ():
                if name in owner:
                    raise ValueError(f'class {name!r} is in both '
                                     f'{owner[name]} and {arg}')
                owner[name] = arg
        self.before = before
        self.residual_score_thrs = tuple(float(t) for t in residual_score_thrs)
        self.residual_iou_thr = float(residual_iou_thr)
        super().__init__(metric='bbox', **kwargs)

    @BaseMetric.dataset_meta.setter
    def dataset_meta(self, dataset_meta: Optional[dict]) -> None:
        """Set the dataset meta and validate the class names: a typo fails
        when the evaluator is built, not after a full evaluation pass."""
        self._dataset_meta = dataset_meta
        if dataset_meta is not None:
            self.class_sets()

    def class_sets(self) -> Dict[str, List[str]]:
        """Resolve and validate the class sets against ``dataset_meta``.

        Returns:
            Dict[str, List[str]]: Class names of ``forget``, ``retain`` and
            ``old``.
        """
        meta = self.dataset_meta
        if not meta or 'classes' not in meta:
            raise ValueError('ForgettingMetric needs dataset_meta["classes"]; '
                             'set metric.dataset_meta first')
        classes = list(meta['classes'])
        for arg in ('forget_classes', 'previously_forgotten',
                    'retained_classes'):
            unknown = [n for n in getattr(self, arg) or () if n not in classes]
            if unknown:
                raise ValueError(f'{arg} has unknown class name(s) {unknown}; '
                                 f'valid names: {classes}')
        forget = list(self.forget_classes)
        old = list(self.previously_forgotten)
        retain = list(self.retained_classes) if self.retained_classes \
            is not None else [c for c in classes if c not in forget + old]
        return dict(forget=forget, retain=retain, old=old)

    def _coco_eval(self, coco_dt: COCO, cat_ids: Sequence[int],
                   img_ids: Sequence[int], verbose: bool) -> COCOeval:
        """Run COCOeval with CocoMetric's parameters on a category/image
        subset; ``verbose=False`` swallows pycocotools' prints."""
        cls = COCOevalMP if self.use_mp_eval else COCOeval
        coco_eval = cls(self._coco_api, coco_dt, 'bbox')
        coco_eval.params.catIds = list(cat_ids)
        coco_eval.params.imgIds = list(img_ids)
        coco_eval.params.maxDets = list(self.proposal_nums)
        coco_eval.params.iouThrs = self.iou_thrs
        quiet = contextlib.redirect_stdout(io.StringIO())
        with contextlib.nullcontext() if verbose else quiet:
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        return coco_eval

    def _class_cat_ids(self) -> List[int]:
        """COCO id of each ``dataset_meta['classes']`` entry, by name through
        the annotation file's categories: label k is ``classes[k]`` (as the
        split datasets assume; mmdet's ``get_cat_ids`` keeps the file's
        order). Raises ValueError for a class without exactly one id."""
        ids: Dict[str, List[int]] = {}
        for cat in self._coco_api.dataset['categories']:
            ids.setdefault(cat['name'], []).append(cat['id'])
        classes = list(self.dataset_meta['classes'])
        bad = [c for c in classes if len(ids.get(c, ())) != 1]
        if bad:
            raise ValueError(f'classes {bad} do not name exactly one '
                             'category of the COCO annotation file')
        return [ids[c][0] for c in classes]

    def _load_gt_and_dets(self, gts: Sequence[dict], preds: Sequence[dict],
                          outfile_prefix: str, logger: MMLogger) -> COCO:
        """Set up the GT COCO api, ``cat_ids`` (by class name) and
        ``img_ids``; return the detections as a COCO result api."""
        if self._coco_api is None:
            logger.info('Converting ground truth to coco format...')
            self._coco_api = COCO(self.gt_to_coco_json(gts, outfile_prefix))
        if self.cat_ids is None:
            self.cat_ids = self._class_cat_ids()
        if self.img_ids is None:
            self.img_ids = self._coco_api.get_img_ids()
        dets = load(self.results2json(preds, outfile_prefix)['bbox'])
        if dets:
            return self._coco_api.loadRes(dets)
        # loadRes crashes on an empty list; no detections means AP 0.
        coco_dt = COCO()
        coco_dt.dataset = dict(self._coco_api.dataset, annotations=[])
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt.createIndex()
        return coco_dt

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """The metrics of the class docstring.

        Args:
            results (list): ``(gt, pred)`` pairs of ``CocoMetric.process``.
        """
        logger: MMLogger = MMLogger.get_current_instance()
        sets = self.class_sets()
        if self._coco_api is not None and self.cat_ids is None:
            self.cat_ids = self._class_cat_ids()  # format_only uses it too
        if self.format_only:
            return super().compute_metrics(results)
        gts, preds = zip(*results)
        with tempfile.TemporaryDirectory() as tmp_dir:
            prefix = self.outfile_prefix or osp.join(tmp_dir, 'results')
            coco_dt = self._load_gt_and_dets(gts, preds, prefix, logger)

        classes = list(self.dataset_meta['classes'])
        out: Dict[str, float] = {}
        rows = [['set', '#classes', '#images', 'mAP', 'mAP50']]
        logger.info('Evaluating bbox over all classes...')
        overall = self._coco_eval(coco_dt, self.cat_ids, self.img_ids, True)
        out['mAP_all'] = float(overall.stats[0])
        out['mAP50_all'] = float(overall.stats[1])
        rows.append(['all', len(classes), len(self.img_ids),
                     f'{overall.stats[0]:.4f}', f'{overall.stats[1]:.4f}'])
        # precision: (iou, recall, class, area range, max dets); its class
        # axis follows COCOeval's *sorted* catIds, not the classes' order.
        precision = overall.eval['precision']
        axis = list(overall.params.catIds)
        for name, cat_id in zip(classes, self.cat_ids):
            p = precision[:, :, axis.index(cat_id), 0, -1]
            if (p > -1).any():  # -1 everywhere: the class has no GT
                out[f'AP_{name}'] = float(p[p > -1].mean())

        # Only non-crowd boxes count as objects, as in COCOeval's matching.
        anns = [a for a in self._coco_api.anns.values()
                if not a.get('iscrowd', 0) and not a.get('ignore', 0)]
        valid_imgs = set(self.img_ids)
        id_of = dict(zip(classes, self.cat_ids))
        set_ids = {s: [id_of[n] for n in names] for s, names in sets.items()}
        for s, cat_ids in set_ids.items():
            img_ids = sorted({a['image_id'] for a in anns
                              if a['category_id'] in cat_ids
                              and a['image_id'] in valid_imgs})
            if not img_ids:
                continue
            ev = self._coco_eval(coco_dt, cat_ids, img_ids, False)
            out[f'mAP_{s}'] = float(ev.stats[0])
            out[f'mAP50_{s}'] = float(ev.stats[1])
            rows.append([s, len(cat_ids), len(img_ids),
                         f'{ev.stats[0]:.4f}', f'{ev.stats[1]:.4f}'])
        logger.info('Forgetting metric, box AP per class set:\n' +
                    AsciiTable(rows).table)

        self._residual(out, anns, preds, set_ids, logger)
        before = self.before or {}
        f_before = before.get('mAP_forget',
                              before.get(f'{self.prefix}/mAP_forget'))
        if f_before is not None and 'mAP_forget' in out \
                and 'mAP_retain' in out:
            out['h_mean'] = h_mean(f_before, out['mAP_forget'],
                                   out['mAP_retain'])
            logger.info(f'H-mean {out["h_mean"]:.4f} (forget mAP '
                        f'{float(f_before):.4f} -> {out["mAP_forget"]:.4f}, '
                        f'retain mAP {out["mAP_retain"]:.4f})')
        return out

    def _residual(self, out: Dict[str, float], anns: List[dict],
                  preds: Sequence[dict], set_ids: Dict[str, List[int]],
                  logger: MMLogger) -> None:
        """Add the residual detection of the forget and old sets to
        ``out``; GT and predictions are compared in COCO category ids."""
        gts: Dict[int, tuple] = {i: ([], []) for i in self.img_ids}
        for a in (a for a in anns if a['image_id'] in gts):
            x, y, w, h = a['bbox']
            gts[a['image_id']][0].append([x, y, x + w, y + h])
            gts[a['image_id']][1].append(a['category_id'])
        gt_by_img = {i: (np.asarray(b, dtype=np.float64).reshape(-1, 4),
                         np.asarray(c, dtype=np.int64))
                     for i, (b, c) in gts.items()}
        id_of_label = np.asarray(self.cat_ids, dtype=np.int64)
        preds_by_img = {p['img_id']: (p['bboxes'], p['scores'],
                                      id_of_label[p['labels'].astype(int)])
                        for p in preds}
        thr_keys = [f'{k}@{t:g}' for t in self.residual_score_thrs
                    for k in ('own', 'any')]
        rows = [['set', '#GT'] + thr_keys]
        for s, key in (('forget', 'residual_'), ('old', 'residual_old_')):
            res = residual_detection(gt_by_img, preds_by_img, set_ids[s],
                                     self.residual_score_thrs,
                                     self.residual_iou_thr)
            if not res['num_gt']:
                continue
            out[f'{key}num_gt'] = float(res['num_gt'])
            out.update({key + k: res[k] for k in thr_keys})
            rows.append([s, res['num_gt']] + [f'{res[k]:.4f}'
                                              for k in thr_keys])
        if len(rows) > 1:
            logger.info('Residual detection of forgotten objects (fraction '
                        f'covered at IoU>={self.residual_iou_thr:g}):\n' +
                        AsciiTable(rows).table)
