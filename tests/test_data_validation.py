"""Bad data fails before training, naming the file, the entries and the
fix: invalid COCO, unknown categories, boxes outside the image, missing or
corrupt images, a checkpoint of another architecture."""
import json
import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config

from conftest import PRETRAIN_CFG, TASK_CFGS
from gslora_det.config_checks import ConfigError, prepare_config
from gslora_det.data.validate import InvalidAnnotations, validate_coco


@pytest.fixture
def data_copy(workspace, tmp_path, monkeypatch):
    """A private copy of the tiny set (so it can be broken) as cwd."""
    shutil.copytree(osp.join(str(workspace), 'data'), tmp_path / 'data')
    monkeypatch.chdir(tmp_path)
    root = tmp_path / 'data' / 'shapes'
    with open(root / 'annotations' / 'instances_train.json') as f:
        coco = json.load(f)
    return root, coco


def write(root, coco):
    with open(root / 'annotations' / 'instances_train.json', 'w') as f:
        json.dump(coco, f)


def check(root):
    validate_coco(str(root / 'annotations' / 'instances_train.json'),
                  str(root / 'train'))


def test_valid_set_passes(data_copy):
    check(data_copy[0])


def test_not_json_and_missing_keys(data_copy):
    root, coco = data_copy
    (root / 'annotations' / 'instances_train.json').write_text('{"images": [')
    with pytest.raises(InvalidAnnotations, match='not valid JSON'):
        check(root)
    del coco['categories']
    write(root, coco)
    with pytest.raises(InvalidAnnotations, match="missing or non-list "
                       "key\\(s\\) \\['categories'\\]"):
        check(root)


def test_unknown_category_id(data_copy):
    root, coco = data_copy
    coco['annotations'][3]['category_id'] = 42
    write(root, coco)
    with pytest.raises(InvalidAnnotations, match='category ids that are not '
                       'in "categories".*42'):
        check(root)


def test_box_outside_the_image(data_copy):
    root, coco = data_copy
    ann = coco['annotations'][0]
    ann['bbox'] = [100.0, 100.0, 60.0, 10.0]
    write(root, coco)
    with pytest.raises(InvalidAnnotations, match=f'outside their image: '
                       f'ann {ann["id"]}'):
        check(root)


def test_missing_and_corrupt_images(data_copy):
    root, coco = data_copy
    name = coco['images'][2]['file_name']
    (root / 'train' / name).unlink()
    with pytest.raises(InvalidAnnotations, match=f'missing from.*{name}'):
        check(root)
    (root / 'train' / name).write_bytes(b'\x89PNG\r\n\x1a\n broken')
    with pytest.raises(InvalidAnnotations, match=f'cannot be read: {name}'):
        check(root)


def test_training_config_reports_bad_data_as_config_error(data_copy):
    root, coco = data_copy
    coco['annotations'][1]['image_id'] = 99999
    write(root, coco)
    cfg = Config.fromfile(TASK_CFGS[0])
    with pytest.raises(ConfigError, match='image ids that are not in'):
        prepare_config(cfg)


def test_checkpoint_of_another_architecture(workspace, tmp_path,
                                            monkeypatch):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    monkeypatch.chdir(workspace)
    other = Config.fromfile(PRETRAIN_CFG).model
    other.encoder.num_layers = 2  # a different detector, same classes
    ckpt = str(tmp_path / 'other.pth')
    torch.save({'state_dict': MODELS.build(other).state_dict()}, ckpt)
    cfg = Config.fromfile(TASK_CFGS[0])
    cfg.load_from = ckpt
    with pytest.raises(ConfigError, match='does not fit the config.*'
                       'missing.*encoder.layers.2.*different architecture'):
        prepare_config(cfg)
