"""When a forgetting task's cached "before" metrics may be reused.

A task evaluates its input model once, before training, and caches the
metrics in ``before_metrics.json`` so that a resumed run does not evaluate a
half-trained model as "before". The cache is keyed by

* the SHA-256 of the task's input checkpoint, recorded when the task
  started, and
* :func:`eval_fingerprint`: the evaluation settings (val dataset with its
  pipeline and class lists, evaluator with the task's class lists, the
  model's ``test_cfg``, the val batch size, and the bytes of the
  annotation files).

Anything else recomputes it. The same key can later name a cache of the
"before" *predictions* (e.g. ``before_predictions.pkl`` next to the
metrics) that a re-scoring with other class lists would reuse.
"""
import hashlib
import json
import os.path as osp
import re
from contextlib import contextmanager
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import torch

from gslora_det.checkpoint import (load_checkpoint_safely, sha256_file,
                                   state_dict_of)
from gslora_det.lora import lora_modules

CACHE_NAME = 'before_metrics.json'


def _plain(obj):
    """Config values as JSON data; a type or function by its import name
    (its ``repr`` would hold a memory address and differ on every run)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    name = getattr(obj, '__qualname__', None)
    return f'{obj.__module__}.{name}' if name else repr(obj)


def _ann_files(dataset, evaluators) -> List[str]:
    """Annotation files the val pass reads (dataset and evaluator)."""
    found = []

    def walk(node):
        if isinstance(node, Mapping):
            ann = node.get('ann_file')
            if isinstance(ann, str) and ann:
                found.append(ann if osp.isabs(ann) else osp.join(
                    node.get('data_root') or '', ann))
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(dataset)
    for ev in evaluators if isinstance(evaluators, (list, tuple)) else [
            evaluators]:
        if isinstance(ev, Mapping) and isinstance(ev.get('ann_file'), str):
            found.append(ev['ann_file'])
    return sorted(set(found))


def eval_fingerprint(cfg, class_sets: Optional[Mapping] = None) -> str:
    """SHA-256 of what decides the val metrics of a given model.

    Loader mechanics (workers, persistence) are left out: they do not
    change the result. The batch size is in: DETR-style models see padded
    batches, so it can move the numbers slightly.

    Args:
        cfg (Config): The run's config.
        class_sets (Mapping, optional): The built metric's class lists
            (``ForgettingMetric.class_sets()``). The task's lists may be
            filled into the metric when its loop is built, not into
            ``cfg``, so they are taken from the metric, and from
            ``cfg.forget_task`` too.

    Returns:
        str: Hex digest.
    """
    loader = cfg.get('val_dataloader') or {}
    evaluator = cfg.get('val_evaluator')
    settings = dict(dataset=loader.get('dataset'),
                    batch_size=loader.get('batch_size'),
                    evaluator=evaluator,
                    model_test_cfg=(cfg.get('model') or {}).get('test_cfg'),
                    forget_task=cfg.get('forget_task'),
                    class_sets=class_sets)
    files = {path: sha256_file(path) if osp.isfile(path) else None
             for path in _ann_files(settings['dataset'], evaluator)}
    text = json.dumps(dict(settings=_plain(settings), ann_files=files),
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def describe_input(path: Optional[str]) -> Dict:
    """The identity of a task's input checkpoint: path, absolute path and
    SHA-256 (None where there is no such file, e.g. a URL)."""
    found = bool(path) and osp.isfile(path)
    return dict(path=path, abs_path=osp.abspath(path) if found else None,
                sha256=sha256_file(path) if found else None)


def cache_decision(cached: Optional[Mapping], input_sha256: Optional[str],
                   fingerprint: str,
                   by_name: Optional[str] = None) -> Tuple[bool, str]:
    """Whether cached "before" metrics may stand for this task's.

    Args:
        cached (Mapping, optional): The cache's content; None when absent.
        input_sha256 (str, optional): SHA-256 of the task's input
            checkpoint; None when the task has none to identify.
        fingerprint (str): :func:`eval_fingerprint` of the settings now.
        by_name (str, optional): Without a hash, accept a cache of an
            input of this name (a URL, say) that has no hash either: for a
            resumed run, which could not re-evaluate it. Defaults to None.

    Returns:
        tuple[bool, str]: Reuse it or not, and why.
    """
    if cached is None:
        return False, 'no cached "before" metrics'
    if input_sha256 is None:
        if by_name and cached.get('input_checkpoint') == by_name and \
                cached.get('input_checkpoint_sha256') is None and \
                cached.get('eval_fingerprint') == fingerprint:
            return True, (f'same input {by_name} (no local file to hash: '
                          'by name) and evaluation settings')
        return False, 'the task has no input checkpoint file to identify'
    old_sha = cached.get('input_checkpoint_sha256')
    if old_sha is None or 'eval_fingerprint' not in cached:
        return False, ('the cache records no input hash or evaluation '
                       'fingerprint (written by an older version)')
    if old_sha != input_sha256:
        return False, (f'the cache was computed from another input '
                       f'checkpoint (sha256 {old_sha[:12]}..., the task\'s '
                       f'input is {input_sha256[:12]}...)')
    if cached['eval_fingerprint'] != fingerprint:
        return False, ('the evaluation settings changed since the cache '
                       'was computed (val data, pipeline, class lists, '
                       'evaluator, batch size or test_cfg)')
    return True, 'same input checkpoint and evaluation settings'


def input_problem(record: Mapping) -> Optional[str]:
    """Why the recorded input checkpoint cannot be reloaded, or None."""
    path, sha = record.get('abs_path') or record.get('path'), record.get(
        'sha256')
    if not path or not osp.isfile(path):
        return f'the task\'s input checkpoint {path} is gone'
    if sha and sha256_file(path) != sha:
        return (f'the task\'s input checkpoint {path} changed since the '
                f'task started (sha256 {sha[:12]}... then)')
    return None


def plan_before(work_dir: str, cfg, iteration: int,
                recorded: Optional[Mapping],
                class_sets: Optional[Mapping] = None) -> Dict:
    """Decide where a task's "before" metrics come from (rank 0).

    Args:
        work_dir (str): The task's work dir (holds the cache).
        cfg (Config): The run's config.
        iteration (int): The runner's iteration: 0 on a fresh start, the
            resumed one otherwise.
        recorded (Mapping, optional): The task's input as recorded when it
            started (:func:`describe_input` plus ``started_at``), restored
            from the resumed checkpoint; None on a fresh start.
        class_sets (Mapping, optional): See :func:`eval_fingerprint`.

    Returns:
        dict: ``input`` (the record to keep), ``fingerprint``, ``reason``,
        ``cached`` (the metrics to reuse, or None: evaluate), ``reload``
        (the input checkpoint to load for that pass, or None) and
        ``error`` where the task cannot go on.
    """
    from gslora_det.report.manifest import utc_now
    cache = osp.join(work_dir, CACHE_NAME)
    cached = None
    if osp.isfile(cache):
        with open(cache) as f:
            cached = json.load(f)
    if iteration == 0:  # a fresh start: the model holds load_from
        record = dict(describe_input(cfg.get('load_from')),
                      started_at=utc_now())
    else:
        # Resumed: load_from names the resumed checkpoint, not the task's
        # input, whose identity was recorded at the start and saved in
        # every checkpoint. A checkpoint of an older version lacks it:
        # then the cache's own record is all there is.
        record = recorded or (
            cached and cached.get('input_checkpoint_sha256') and dict(
                path=cached.get('input_checkpoint'),
                abs_path=cached.get('input_checkpoint_abs'),
                sha256=cached['input_checkpoint_sha256'],
                started_at=cached.get('started_at')))
        if not record:
            return dict(error=(
                f'resumed at iteration {iteration}, but neither the '
                f'checkpoint nor {cache} records the task\'s input '
                'checkpoint, so its "before" metrics cannot be evaluated: '
                'start the task anew (in another work dir)'))
    fingerprint = eval_fingerprint(cfg, class_sets)
    use, reason = cache_decision(cached, record['sha256'], fingerprint,
                                 record['path'] if iteration else None)
    plan = dict(input=dict(record), fingerprint=fingerprint, reason=reason,
                cached=cached if use else None, reload=None)
    if not use and iteration > 0:
        # The model is half-trained: the pass needs the input's weights.
        problem = input_problem(record)
        if problem:
            plan['error'] = (f'the "before" metrics must be recomputed '
                             f'({reason}), but {problem}: restore it, or '
                             'start the task anew (in another work dir)')
        plan['reload'] = record.get('abs_path') or record['path']
    return plan


def cache_entry(metrics: Mapping, record: Mapping,
                fingerprint: str) -> Dict:
    """The cache's content: the "before" metrics with what keys them.

    Args:
        metrics (Mapping): The "before" metrics (prefix stripped).
        record (Mapping): The task's input (see :func:`plan_before`).
        fingerprint (str): :func:`eval_fingerprint` of the pass.

    Returns:
        dict: Metrics plus ``input_checkpoint`` (path as given),
        ``input_checkpoint_abs``, ``input_checkpoint_sha256``,
        ``eval_fingerprint``, ``started_at`` (the task's start) and
        ``computed_at``.
    """
    from gslora_det.report.manifest import utc_now
    return dict(metrics, input_checkpoint=record.get('path'),
                input_checkpoint_abs=record.get('abs_path'),
                input_checkpoint_sha256=record.get('sha256'),
                eval_fingerprint=fingerprint,
                started_at=record.get('started_at'), computed_at=utc_now())


@contextmanager
def input_weights(model: torch.nn.Module,
                  path: Optional[str]) -> Iterator[None]:
    """Give ``model`` the input checkpoint's weights (LoRA switched off by
    zeroing B) inside the block and its own weights back after it; no-op
    when ``path`` is None.

    For a resumed task whose "before" must be recomputed: the model is
    half-trained then, and full fine-tuning baselines changed the base
    weights too, so switching LoRA off alone would not do.
    """
    if path is None:
        yield
        return
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = state_dict_of(load_checkpoint_safely(path))
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=False)
        with torch.no_grad():
            for _, module in lora_modules(model):
                module.lora_B.zero_()
        yield
    finally:
        model.load_state_dict(saved)
