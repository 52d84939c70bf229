"""Before / after picture of a forgetting task: what a user of the model
sees on the same validation images before and after the classes went.

Each row is one validation image holding forgotten objects (the images with
the most of them, then by id: the same images on every run); the left
column shows the detections of the task's input model, the right one those
of the model after forgetting, read from the ``{before,after}_predictions
.bbox.json`` COCO results that every task keeps. Forgotten ground truth is
outlined (dashed); a detection of another class that covers a forgotten
object is marked "relabelled": the class is gone from the scores but the
object is still boxed, which mAP alone does not show. Boxes and labels are
drawn with mmdet's ``DetLocalVisualizer``, the grid with matplotlib.
"""
import json
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Mapping, Optional, Sequence

import mmcv
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gslora_det.evaluation.residual import box_iou
from gslora_det.io_utils import atomic_path

#: Edge colours: bright, for dark and photographic backgrounds alike.
GT_COLOUR = '#ffe119'
DET_COLOURS = dict(forgotten='#ff4040', relabelled='#ff40ff',
                   other='#3ddc84')
DET_LABELS = dict(forgotten='detection of a forgotten class',
                  relabelled='other class on a forgotten object (relabelled)',
                  other='detection of another class')


def _xyxy(bbox: Sequence[float]) -> List[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def short_name(file_name: str, max_chars: int = 24) -> str:
    """The image's base name, cut in the middle to ``max_chars``: real
    photo sets carry long export names (Roboflow's ``..._jpg.rf.<hash>``)
    that would run into the next row's label."""
    name = osp.basename(file_name)
    if len(name) <= max_chars:
        return name
    keep = max_chars - 1
    return name[:(keep + 1) // 2] + '…' + name[-(keep // 2):]


def relabelled_detections(gt_boxes: np.ndarray, gt_labels: np.ndarray,
                          det_boxes: np.ndarray, det_labels: np.ndarray,
                          det_scores: np.ndarray, score_thr: float = 0.3,
                          iou_thr: float = 0.5) -> np.ndarray:
    """Which detections box a forgotten object as another class.

    Args:
        gt_boxes (np.ndarray): Forgotten objects, (N, 4) ``xyxy``.
        gt_labels (np.ndarray): Their classes, (N,).
        det_boxes (np.ndarray): Detections, (M, 4) ``xyxy``.
        det_labels (np.ndarray): Their classes, (M,), as ``gt_labels``.
        det_scores (np.ndarray): Their scores, (M,).
        score_thr (float): Lower scores are not counted. Defaults to 0.3.
        iou_thr (float): Minimum IoU with the object. Defaults to 0.5.

    Returns:
        np.ndarray: (M,) bool, True for a detection scoring ``>= score_thr``
        whose IoU with a forgotten object of another class is
        ``>= iou_thr``.
    """
    det_labels = np.asarray(det_labels).reshape(-1)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    if not len(det_labels) or not len(gt_labels):
        return np.zeros(len(det_labels), dtype=bool)
    covers = box_iou(gt_boxes, det_boxes) >= iou_thr  # (N, M)
    other = gt_labels[:, None] != det_labels[None, :]
    confident = np.asarray(det_scores).reshape(-1) >= score_thr
    return (covers & other).any(axis=0) & confident


def pick_images(annotations: Sequence[Mapping], forget_ids: Sequence[int],
                num_images: int,
                prefer: Optional[set] = None) -> List[int]:
    """The ``num_images`` image ids with the most forgotten (non-crowd)
    objects, then by id; among ``prefer`` (e.g. the images that have
    predictions) when any of them holds one."""
    counts: Dict[int, int] = defaultdict(int)
    for ann in annotations:
        if ann['category_id'] in forget_ids and not ann.get('iscrowd'):
            counts[ann['image_id']] += 1
    if prefer and set(counts) & prefer:
        counts = {k: v for k, v in counts.items() if k in prefer}
    return sorted(counts, key=lambda i: (-counts[i], i))[:num_images]


def _load_detections(path: str, names: Mapping[int, str],
                     score_thr: float) -> Dict[int, List[dict]]:
    """COCO results by image id, those scoring >= ``score_thr`` only; every
    image with a prediction is a key (the set that was evaluated)."""
    with open(path) as f:
        dets = json.load(f)
    out: Dict[int, List[dict]] = defaultdict(list)
    for d in dets:
        kept = out[d['image_id']]
        if d['score'] >= score_thr and d['category_id'] in names:
            kept.append(d)
    return out


def _inside(pos: np.ndarray, text: str, font: int,
            width: int) -> np.ndarray:
    """Move a label left so that it ends inside the image (its width is
    estimated: 0.6 em per character at the visualizer's 100 dpi)."""
    chars = max(len(line) for line in text.split('\n'))
    size = 0.6 * font * 100 / 72 * chars + 4
    return np.array([max(0.0, min(pos[0], width - size)), pos[1]])


def _draw_panel(vis, image: np.ndarray, scale: float, gts: List[dict],
                dets: List[dict], names: Mapping[int, str],
                forget_ids: set, score_thr: float) -> tuple:
    """Draw one panel; return (RGB image, caption)."""
    vis.set_image(image)
    gt_boxes = np.array([_xyxy(a['bbox']) for a in gts]).reshape(-1, 4)
    gt_labels = np.array([a['category_id'] for a in gts])
    boxes = np.array([_xyxy(d['bbox']) for d in dets]).reshape(-1, 4)
    labels = np.array([d['category_id'] for d in dets])
    scores = np.array([d['score'] for d in dets])
    relabelled = relabelled_detections(gt_boxes, gt_labels, boxes, labels,
                                       scores, score_thr)
    font = max(8, int(max(image.shape[:2]) / 40))
    if len(gt_boxes):
        vis.draw_bboxes(gt_boxes * scale, edge_colors=GT_COLOUR,
                        line_styles='--', line_widths=3, alpha=1.0)
        vis.draw_texts([f'GT {names[c]}' for c in gt_labels],
                       gt_boxes[:, [0, 3]] * scale + [2, -2],
                       vertical_alignments='bottom', colors=GT_COLOUR,
                       font_sizes=font - 1, bboxes=dict(
                           facecolor='black', alpha=0.6, pad=0.5,
                           edgecolor='none'))
    order = np.argsort(scores)  # the most confident drawn last, on top
    for j in order:
        role = ('relabelled' if relabelled[j] else 'forgotten'
                if labels[j] in forget_ids else 'other')
        vis.draw_bboxes(boxes[j] * scale, edge_colors=DET_COLOURS[role],
                        line_widths=3 if role != 'other' else 2, alpha=1.0)
        text = f'{names[labels[j]]} {scores[j]:.2f}' + (
            '\nRELABELLED' if role == 'relabelled' else '')
        vis.draw_texts(text, _inside(boxes[j, :2] * scale + 2, text, font,
                                     image.shape[1]),
                       colors=DET_COLOURS[role], font_sizes=font,
                       bboxes=dict(facecolor='black', alpha=0.75, pad=0.5,
                                   edgecolor='none'))
    own = 0
    if len(gt_boxes) and len(boxes):
        iou = box_iou(gt_boxes, boxes) >= 0.5
        own = int((iou & (gt_labels[:, None] == labels[None, :])).any(1)
                  .sum())
    caption = (f'{len(dets)} detection(s); forgotten objects found\n'
               f'as their class: {own}/{len(gts)}, relabelled: '
               f'{int(relabelled.sum())}')
    return vis.get_image(), caption


def draw_before_after(ann_file: str, img_dir: str, before_json: str,
                      after_json: str, classes: Sequence[str],
                      forget_classes: Sequence[str], out_path: str,
                      num_images: int = 4, score_thr: float = 0.3,
                      before_label: str = 'input model',
                      after_label: str = 'after forgetting',
                      title: Optional[str] = None,
                      panel_px: int = 384) -> str:
    """Draw the before | after grid of detections on the same images.

    Args:
        ann_file (str): COCO annotation file of the val images; category
            ids map to names through its ``categories``.
        img_dir (str): Folder of the images' ``file_name``.
        before_json (str): COCO results of the model before forgetting.
        after_json (str): COCO results of the model after forgetting.
        classes (Sequence[str]): The dataset's classes; categories outside
            are left out (as mmdet's ``CocoDataset`` does).
        forget_classes (Sequence[str]): The classes forgotten in the task.
        out_path (str): Output PNG (written atomically).
        num_images (int): Rows. Defaults to 4.
        score_thr (float): Detections below it are not drawn nor counted.
            Defaults to 0.3.
        before_label (str): Which model the left column shows.
        after_label (str): Which model the right column shows.
        title (str, optional): Figure title; the score threshold and the
            forgotten classes are always added.
        panel_px (int): Longer side of each image as drawn. Defaults to 384.

    Returns:
        str: ``out_path``.

    Raises:
        ValueError: a forgotten class the annotation file does not have,
            no image holding a forgotten object, or ``num_images`` < 1.
    """
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}')
    with open(ann_file) as f:
        coco = json.load(f)
    names = {c['id']: c['name'] for c in coco['categories']
             if c['name'] in set(classes)}
    missing = set(forget_classes) - set(names.values())
    if missing:
        raise ValueError(f'forgotten classes {sorted(missing)} are not '
                         f'categories of {ann_file} (or not in classes)')
    forget_ids = {i for i, n in names.items() if n in forget_classes}
    before = _load_detections(before_json, names, score_thr)
    after = _load_detections(after_json, names, score_thr)
    ids = pick_images(coco['annotations'], forget_ids, num_images,
                      prefer=set(before) | set(after))
    if not ids:
        raise ValueError(f'no image of {ann_file} holds a forgotten object '
                         f'({", ".join(forget_classes)})')
    images = {im['id']: im for im in coco['images']}
    gts: Dict[int, List[dict]] = defaultdict(list)
    for ann in coco['annotations']:
        if ann['category_id'] in forget_ids and not ann.get('iscrowd'):
            gts[ann['image_id']].append(ann)

    from mmdet.visualization import DetLocalVisualizer
    vis = DetLocalVisualizer(name='gslora_before_after')
    fig = Figure(figsize=(2 * panel_px / 100 + 0.6,
                          len(ids) * (panel_px / 100 + 0.45) + 1.3),
                 layout='constrained')
    axes = fig.subplots(len(ids), 2, squeeze=False)
    for row, img_id in enumerate(ids):
        info = images[img_id]
        image = mmcv.imread(osp.join(img_dir, info['file_name']),
                            channel_order='rgb')
        scale = panel_px / max(image.shape[:2])
        image = mmcv.imrescale(image, scale)
        for col, dets in enumerate((before[img_id], after[img_id])):
            drawn, caption = _draw_panel(vis, image, scale, gts[img_id],
                                         dets, names, forget_ids, score_thr)
            ax = axes[row][col]
            ax.imshow(drawn)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(caption, fontsize=8)
            if row == 0:
                ax.set_title(f'{"BEFORE" if col == 0 else "AFTER"}: '
                             f'{before_label if col == 0 else after_label}',
                             fontsize=10, fontweight='bold')
        axes[row][0].set_ylabel(
            f'{short_name(info["file_name"])} (id {img_id})\n'
            f'{len(gts[img_id])} '
            'forgotten object(s)', fontsize=8)
    head = f'{title}\n' if title else ''
    fig.suptitle(f'{head}forgotten: {", ".join(forget_classes)}; '
                 f'detections with score ≥ {score_thr:g}', fontsize=11)
    handles = [Line2D([], [], color=GT_COLOUR, linestyle='--', linewidth=2,
                      label='forgotten object (ground truth)')]
    handles += [Line2D([], [], color=c, linewidth=2, label=DET_LABELS[r])
                for r, c in DET_COLOURS.items()]
    fig.legend(handles=handles, loc='outside lower center', ncol=2,
               fontsize=8, frameon=False)
    FigureCanvasAgg(fig)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format='png', dpi=100)
    return out_path


def draw_task_before_after(runner, out_path: str,
                           input_checkpoint: Optional[str] = None,
                           **kwargs) -> str:
    """:func:`draw_before_after` for a forgetting task's runner (its val
    set, class sets and kept predictions).

    Args:
        runner (Runner): The task's runner, after training.
        out_path (str): Output PNG.
        input_checkpoint (str, optional): The task's input, for the title.
        **kwargs: Passed to :func:`draw_before_after`.

    Returns:
        str: ``out_path``.
    """
    from gslora_det.hooks.save_predictions_hook import predictions_path
    metric = runner.val_evaluator.metrics[0]
    dataset = runner.val_dataloader.dataset
    evaluator = runner.cfg.get('val_evaluator') or {}
    if isinstance(evaluator, (list, tuple)):
        evaluator = evaluator[0]
    ann_file = evaluator.get('ann_file') or dataset.ann_file
    paths = [predictions_path(runner.work_dir, p) for p in ('before',
                                                              'after')]
    for path in paths:
        if not osp.isfile(path):
            raise FileNotFoundError(f'no kept predictions {path}')
    task = (runner.cfg.get('forget_task') or {}).get('index')
    # The last two parts: a sequence's inputs are all task_<k>/merged.pth.
    kwargs.setdefault('before_label', '/'.join(
        osp.normpath(input_checkpoint).split(osp.sep)[-2:])
        if input_checkpoint else 'input model')
    kwargs.setdefault('after_label', osp.join(
        osp.basename(osp.normpath(runner.work_dir)), 'merged.pth'))
    kwargs.setdefault('title', f'Task {task}: before vs after forgetting')
    return draw_before_after(
        ann_file, dataset.data_prefix['img'], *paths,
        dataset.metainfo['classes'], metric.class_sets()['forget'],
        out_path, **kwargs)
