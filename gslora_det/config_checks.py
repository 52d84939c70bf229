"""Checks and fill-ins applied to a config before the Runner is built.

Everything that can be known to be wrong from the config alone (a missing
annotation file, a class name the dataset does not have, a forget list that
repeats a class, a checkpoint with another class count) is reported here
with a message that names the problem and the fix, before any time is
spent training. :func:`prepare_config` runs from ``tools/train.py`` before
the Runner is built and again from the registered loops
(:mod:`gslora_det.loops`), so that mmdet's own entry points get the same
checks; the data checks run once per task and process, on rank 0 only, and
each says what it checked.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence


class ConfigError(ValueError):
    """A config that cannot work, with a message saying how to fix it."""


#: Fingerprints of the configs whose data checks already ran here.
_CHECKED: set = set()


def _rank() -> int:
    """This process's rank, also before the process group exists."""
    from mmengine.dist import get_rank, is_distributed
    if is_distributed():
        return get_rank()
    return int(os.environ.get('RANK', '0'))


def _default_log(line: str) -> None:
    from mmengine.logging import print_log
    print_log(line, logger='current')


def dataset_cfgs(cfg, split: str) -> List:
    """The dataset configs of a dataloader, unwrapping dataset wrappers."""
    loader = cfg.get(f'{split}_dataloader')
    if not loader:
        return []
    stack, found = [loader['dataset']], []
    while stack:
        ds = stack.pop()
        if 'datasets' in ds:
            stack.extend(ds['datasets'])
        elif 'dataset' in ds:
            stack.append(ds['dataset'])
        else:
            found.append(ds)
    return found


def check_data_files(cfg, splits: Sequence[str],
                     log: Optional[Callable] = None) -> None:
    """Every dataset's data root and annotation file exists, and each
    annotation file (and a sample of its images) is valid."""
    for split in splits:
        for ds in dataset_cfgs(cfg, split):
            root = ds.get('data_root', '') or ''
            if root and not osp.isdir(root):
                hint = (' Generate the built-in set with '
                        '`python tools/make_shapes.py`.'
                        if 'shapes' in root else '')
                raise ConfigError(
                    f'{split} data root {root!r} does not exist. Set '
                    f'`data_root` in the config or with --cfg-options.'
                    f'{hint}')
            ann = ds.get('ann_file')
            if ann:
                path = ann if osp.isabs(ann) else osp.join(root, ann)
                if not osp.isfile(path):
                    raise ConfigError(
                        f'{split} annotation file {path!r} does not exist. '
                        'Point `ann_file` (relative to `data_root`) at a '
                        'COCO-format JSON file.')
                _validate(path, root, ds, log)


def _validate(ann_file: str, root: str, ds, log=None) -> None:
    """COCO structure, references, boxes and image files of a dataset."""
    from gslora_det.data.validate import InvalidAnnotations, validate_coco
    prefix = (ds.get('data_prefix') or {}).get('img', '')
    img_dir = prefix if osp.isabs(prefix) else osp.join(root, prefix)
    try:
        validate_coco(ann_file, img_dir if osp.isdir(img_dir) else None,
                      log=log)
    except InvalidAnnotations as err:
        raise ConfigError(str(err)) from err
    if not osp.isdir(img_dir):
        raise ConfigError(f'image folder {img_dir!r} does not exist: set '
                          '`data_prefix.img` (relative to `data_root`)')


def check_classes_in_annotations(cfg, splits: Sequence[str]) -> None:
    """The config's class names exist in the annotation file's categories,
    in the file's order: mmdet silently drops classes it does not find, and
    numbers labels in the file's category order whatever the order of
    ``metainfo.classes``, either of which would train a detector whose
    outputs mean something else than the config says."""
    from gslora_det.task import annotation_file, file_category_names
    for split in splits:
        for ds in dataset_cfgs(cfg, split):
            classes = (ds.get('metainfo') or {}).get('classes')
            path = annotation_file(ds)
            if not classes or not path:
                continue
            names = file_category_names(path)
            check_class_names(classes, names, f'{split} dataset classes')
            in_file_order = [n for n in names if n in set(classes)]
            if list(classes) != in_file_order:
                raise ConfigError(
                    f'{split} dataset classes {list(classes)} are not in the '
                    f'category order of {path} ({in_file_order}): mmdet '
                    'numbers labels in the file\'s order, so label i would '
                    'not be classes[i]. List the classes in the file\'s '
                    'order.')
            return


def check_class_names(names: Sequence[str], valid: Sequence[str],
                      what: str) -> None:
    """Every name in ``names`` is one of ``valid``; no name twice."""
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ConfigError(
            f'{what}: unknown class name(s) {unknown}. Valid names are: '
            f'{list(valid)}')
    seen, twice = set(), []
    for n in names:
        if n in seen:
            twice.append(n)
        seen.add(n)
    if twice:
        raise ConfigError(f'{what}: class(es) {sorted(set(twice))} named '
                          'more than once; name each class once.')


def check_optim_wrapper(cfg) -> None:
    """The proximal group lasso runs in its optimiser wrapper: without it
    the groups would get no sparsity at all."""
    mode = (((cfg.get('model') or {}).get('group_lasso_cfg') or {})
            .get('mode', 'penalty'))
    forgetting = cfg.get('forgetting') or {}
    if forgetting.get('optim_wrapper'):  # the one the task trains with
        from gslora_det.forgetting_setup import forgetting_optim_wrapper
        wrapper = forgetting_optim_wrapper(forgetting, cfg.get('model'))
    else:
        wrapper = cfg.get('optim_wrapper') or {}
    wrapper = wrapper.get('type', 'OptimWrapper')
    if mode == 'proximal' and 'ProximalGroupLassoOptimWrapper' not in str(
            wrapper):
        raise ConfigError(
            "model.group_lasso_cfg.mode='proximal' needs "
            "optim_wrapper.type='ProximalGroupLassoOptimWrapper' (it is "
            f"{wrapper!r}; under the forgetting default, "
            "forgetting.optim_wrapper, where a plain OptimWrapper is switched "
            "for you); or set mode='penalty'")


def _fingerprint(cfg, mode: str) -> str:
    """What the checks depend on: data files, task, checkpoint, model."""
    parts = dict(mode=mode, task=cfg.get('forget_task'),
                 replay=cfg.get('replay'), load_from=cfg.get('load_from'),
                 resume=cfg.get('resume'),
                 model=(cfg.get('model') or {}).get('type'),
                 # Not the class lists: filling the task in sets those.
                 data=[(ds.get('type'), ds.get('data_root'),
                        ds.get('ann_file'), ds.get('data_prefix'))
                       for split in ('train', 'val', 'test')
                       for ds in dataset_cfgs(cfg, split)])
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def prepare_config(cfg, mode: str = 'train', model=None,
                   log: Optional[Callable] = None) -> None:
    """Validate ``cfg`` and fill in what follows from its forget task.

    The data and checkpoint checks run once per process for the same
    config (``tools/train.py`` runs them before the Runner exists, the
    loops again for other entry points) and only on rank 0; the task's
    class lists are filled in every time, on every rank.

    Args:
        cfg (Config): The config, modified in place.
        mode (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.
        model (nn.Module, optional): The built model, compared with the
            checkpoint instead of building one from the config.
        log (callable, optional): Receives one line per check. Defaults to
            mmengine's current logger.

    Raises:
        ConfigError: with a message naming the problem and the fix.
    """
    log = log or _default_log
    splits = ('train', 'val') if mode == 'train' else ('test', )
    key = _fingerprint(cfg, mode)
    check = key not in _CHECKED and _rank() == 0
    if cfg.get('forget_task') is not None:
        from gslora_det.detectors.support import check_supported_detector
        check_supported_detector(cfg.get('model') or {})
    check_optim_wrapper(cfg)
    if check:
        check_data_files(cfg, splits, log)
        check_classes_in_annotations(cfg, splits[::-1])
    if cfg.get('forget_task') is not None:
        from gslora_det.task import apply_forget_task
        apply_forget_task(cfg, mode=mode)
    if check and mode == 'train':
        check_checkpoint_matches_model(cfg, model)
        if cfg.get('load_from') and not cfg.get('resume'):
            log(f'pre-flight: checkpoint {cfg.load_from} fits the model')
    _CHECKED.add(key)


def check_checkpoint_matches_model(cfg, model=None) -> None:
    """The checkpoint to load (``load_from``, not a resume) fits the
    config's model: same class count, same parameter names and shapes.

    mmengine loads checkpoints non-strictly and only warns, so a checkpoint
    of another architecture would otherwise train or evaluate a model that
    is partly random.
    """
    path = cfg.get('load_from')
    if not path or cfg.get('resume') or 'model' not in cfg:
        return
    from gslora_det.checkpoint import load_checkpoint_safely, state_dict_of
    from gslora_det.inject import is_lora_param
    try:
        state = state_dict_of(load_checkpoint_safely(path))
    except (FileNotFoundError, RuntimeError) as err:
        raise ConfigError(str(err)) from err
    num_classes = cfg.model.get('bbox_head', {}).get('num_classes')
    for key, value in state.items():
        if key.endswith('cls_branches.0.weight') and num_classes and \
                value.shape[0] != num_classes:
            raise ConfigError(
                f'checkpoint {path} has {value.shape[0]} classes ({key}: '
                f'{tuple(value.shape)}) but the config has {num_classes}: '
                'use the checkpoint trained on this dataset, or the config '
                'that matches the checkpoint')
    if model is None:
        model = _build_model(cfg)
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(model):
        model = model.module
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()
                if not is_lora_param(k)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected
                  and not is_lora_param(k)]
    shapes = [f'{k} {tuple(state[k].shape)} vs {v}'
              for k, v in expected.items()
              if k in state and tuple(state[k].shape) != v]
    if missing or unexpected or shapes:
        parts = []
        for what, items in (('missing', missing), ('unexpected', unexpected),
                            ('shape mismatches', shapes)):
            if items:
                parts.append(f'{len(items)} {what} (e.g. {items[:3]})')
        raise ConfigError(
            f'checkpoint {path} does not fit the config\'s model '
            f'({cfg.model.get("type")}): '
            f'{"; ".join(parts)}. It is from a different architecture: '
            'use the config it was trained with.')


def _build_model(cfg):
    """The config's model, without downloading backbone weights."""
    import copy
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    model_cfg = copy.deepcopy(cfg.model)
    if 'backbone' in model_cfg:
        model_cfg.backbone.pop('init_cfg', None)  # no weight download
    # Nested parts (data preprocessor, ...) resolve in the default scope,
    # which the Runner has not set yet at this point.
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmdet')):
        return MODELS.build(model_cfg)


# Kept name for older imports.
_dataset_cfgs = dataset_cfgs
