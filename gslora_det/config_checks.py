"""Checks and fill-ins applied to a config before the Runner is built.

Everything that can be known to be wrong from the config alone (a missing
annotation file, a class name the dataset does not have, a forget list that
repeats a class, a checkpoint with another class count) is reported here
with a message that names the problem and the fix, before any model is
built or any time is spent training.
"""
import os.path as osp
from typing import List, Sequence


class ConfigError(ValueError):
    """A config that cannot work, with a message saying how to fix it."""


def _dataset_cfgs(cfg, split: str) -> List:
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


def check_data_files(cfg, splits: Sequence[str]) -> None:
    """Every dataset's data root and annotation file exists."""
    for split in splits:
        for ds in _dataset_cfgs(cfg, split):
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
                _validate(path, root, ds)


def _validate(ann_file: str, root: str, ds) -> None:
    """COCO structure, references, boxes and image files of a dataset."""
    from gslora_det.data.validate import InvalidAnnotations, validate_coco
    prefix = (ds.get('data_prefix') or {}).get('img', '')
    img_dir = prefix if osp.isabs(prefix) else osp.join(root, prefix)
    try:
        validate_coco(ann_file, img_dir if osp.isdir(img_dir) else None)
    except InvalidAnnotations as err:
        raise ConfigError(str(err)) from err
    if not osp.isdir(img_dir):
        raise ConfigError(f'image folder {img_dir!r} does not exist: set '
                          '`data_prefix.img` (relative to `data_root`)')


#: Annotation files larger than this are not re-read just to check class
#: names (COCO train2017 is ~450 MB); a smaller split of the same set is.
_MAX_ANN_BYTES_TO_CHECK = 100 * 2**20


def check_classes_in_annotations(cfg, splits: Sequence[str]) -> None:
    """The config's class names exist in the annotation file's categories:
    mmdet silently drops classes it does not find, which would train a
    detector whose outputs mean something else than the config says."""
    import json
    for split in splits:
        for ds in _dataset_cfgs(cfg, split):
            classes = ds.get('metainfo', {}).get('classes')
            ann = ds.get('ann_file')
            if not classes or not ann:
                continue
            path = ann if osp.isabs(ann) else osp.join(
                ds.get('data_root', '') or '', ann)
            if osp.getsize(path) > _MAX_ANN_BYTES_TO_CHECK:
                continue
            try:
                with open(path) as f:
                    coco = json.load(f)
                names = [c['name'] for c in coco['categories']]
            except (ValueError, KeyError, TypeError) as err:
                raise ConfigError(
                    f'{path} is not a COCO-format annotation file '
                    f'({type(err).__name__}: {err}); it needs "images", '
                    '"annotations" and "categories"') from err
            check_class_names(classes, names, f'{split} dataset classes')
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


def prepare_config(cfg, mode: str = 'train') -> None:
    """Validate ``cfg`` and fill in what follows from its forget task.

    Args:
        cfg (Config): The config, modified in place.
        mode (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.

    Raises:
        ConfigError: with a message naming the problem and the fix.
    """
    splits = ('train', 'val') if mode == 'train' else ('test', )
    check_data_files(cfg, splits)
    check_classes_in_annotations(cfg, splits[::-1])
    if cfg.get('forget_task') is not None:
        from gslora_det.task import apply_forget_task
        apply_forget_task(cfg, mode=mode)
    check_checkpoint_matches_model(cfg)


def check_checkpoint_matches_model(cfg) -> None:
    """The checkpoint to load (``load_from``, not a resume) fits the
    config's model: same class count, same parameter names and shapes.

    mmengine loads checkpoints non-strictly and only warns, so a checkpoint
    of another architecture would otherwise train or evaluate a model that
    is partly random.
    """
    import copy
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
        model = MODELS.build(model_cfg)
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
