"""Chess pieces: Roboflow COCO -> downscaled COCO with its quirks fixed, and
the chess configs.

The converter tests run on a tiny hand-built export with the real one's
quirks; the test on the real copy at ``../shared/data/chess`` (relative to
the repo) is skipped, with the reason, when it is absent.
"""
import json
import os
import os.path as osp
import runpy
import sys

import pytest
from PIL import Image

from conftest import CONFIGS, REPO, TOOLS
from gslora_det.data.chess import (CHESS_CLASSES, DEFAULT_SHORT_SIDE,
                                   MANIFEST, chess_converted, convert_chess,
                                   find_source, scaled_size)
from gslora_det.data.validate import validate_coco

CHESS_SRC = osp.normpath(osp.join(REPO, '..', 'shared', 'data', 'chess'))
needs_chess = pytest.mark.skipif(
    not osp.isfile(osp.join(CHESS_SRC, 'train', '_annotations.coco.json')),
    reason=f'chess data not found at {CHESS_SRC} (put the Roboflow "Chess '
    'Pieces v23" COCO export, github.com/jsansao/ChessPiecesv23, there to '
    'run this test)')
DATASET_CFG = osp.join(CONFIGS, '_base_', 'datasets', 'chess_detection.py')
PRETRAIN_CFG = osp.join(CONFIGS, 'chess',
                        'deformable-detr_effnet-lite0-tiny_chess.py')

# The export's categories: the supercategory, the colourless 'bishop', then
# the 12 classes in alphabetical (not the converted) order.
EXPORT_CATEGORIES = (
    [dict(id=0, name='pieces', supercategory='none'),
     dict(id=1, name='bishop', supercategory='pieces')] +
    [dict(id=k + 2, name=n, supercategory='pieces')
     for k, n in enumerate(sorted(CHESS_CLASSES))])
EXPORT_ID = {c['name']: c['id'] for c in EXPORT_CATEGORIES}
W, H = 400, 268  # short side 268 -> 67 px: scale exactly 0.25 (100 x 67)


def _write_export(root, boxes_per_split, size=(W, H)):
    """A Roboflow-like export: ids from 0, one JSON per split folder.

    ``boxes_per_split``: split folder -> list of images, each a list of
    ``(category name, [x, y, w, h])``.
    """
    for folder, images in boxes_per_split.items():
        os.makedirs(osp.join(root, folder), exist_ok=True)
        coco = dict(info=dict(url='https://example.org'),
                    licenses=[dict(id=1, name='Public Domain')],
                    categories=EXPORT_CATEGORIES, images=[], annotations=[])
        for img_id, boxes in enumerate(images):
            name = f'{folder}{img_id}_jpg.rf.0123abcd.jpg'
            Image.new('RGB', size, (90, 120, 60)).save(
                osp.join(root, folder, name))
            coco['images'].append(dict(id=img_id, file_name=name,
                                       width=size[0], height=size[1]))
            for cat, bbox in boxes:
                coco['annotations'].append(dict(
                    id=len(coco['annotations']), image_id=img_id,
                    category_id=EXPORT_ID[cat], bbox=bbox,
                    area=bbox[2] * bbox[3], segmentation=[], iscrowd=0))
        with open(osp.join(root, folder, '_annotations.coco.json'), 'w') as f:
            json.dump(coco, f)


TINY = {
    'train': [[('white-rook', [40, 20, 120, 172]),
               ('bishop', [200, 20, 100, 100]),       # stray, colourless
               ('black-pawn', [10, 10, 0, 40]),       # zero area
               ('black-queen', [360, 200, 80, 100]),  # past the border
               ('white-pawn', [300, 10, 3, 3])],      # < 1 px at 0.25
              [('black-king', [0, 0, 400, 268])]],
    'valid': [[('white-queen', [100, 60, 40, 80])], []],  # one empty image
    'test': [[('black-knight', [8, 4, 24, 32])]],
}


def _load(out, split):
    with open(osp.join(out, 'annotations', f'instances_{split}.json')) as f:
        return json.load(f)


def test_class_order_is_fixed_and_documented():
    assert CHESS_CLASSES == (
        'white-king', 'white-queen', 'white-bishop', 'white-knight',
        'white-rook', 'white-pawn', 'black-king', 'black-queen',
        'black-bishop', 'black-knight', 'black-rook', 'black-pawn')
    assert scaled_size(2048, 1371, 320) == (478, 320)
    assert scaled_size(1371, 2048, 320) == (320, 478)


def test_convert_fixes_quirks_and_scales_boxes(tmp_path):
    src, out = str(tmp_path / 'src'), str(tmp_path / 'out')
    _write_export(src, TINY)
    seen = []
    stats = convert_chess(src, out, short_side=67,
                          progress=lambda s, i, n: seen.append((s, i, n)))
    assert seen == [('train', 1, 2), ('train', 2, 2), ('val', 1, 2),
                    ('val', 2, 2), ('test', 1, 1)]
    assert chess_converted(out, 67) and not chess_converted(out, 320)
    assert not any(s['skipped'] for s in stats.values())
    assert stats['train']['fixes'] == {
        'degenerate box dropped': 1, 'box clipped to the image': 1,
        "supercategory 'pieces' dropped": 1,
        "category 'bishop' (no colour) dropped": 1,
        "'bishop' box dropped (not one of the 12 classes)": 1,
        'degenerate box dropped after downscaling': 1}
    assert stats['val']['fixes']['image without boxes kept'] == 1
    assert stats['train']['annotations'] == 3
    assert stats['train']['per_class']['white-rook'] == 1
    coco = _load(out, 'train')
    assert [c['name'] for c in coco['categories']] == list(CHESS_CLASSES)
    assert [c['id'] for c in coco['categories']] == list(range(1, 13))
    # ids renumbered from 1 (pycocotools counts a match to id 0 as a miss)
    assert [i['id'] for i in coco['images']] == [1, 2]
    assert [a['id'] for a in coco['annotations']] == [1, 2, 3]
    img = coco['images'][0]
    assert (img['width'], img['height']) == (100, 67)
    assert img['file_name'] == 'train/train0_jpg.rf.0123abcd.jpg'
    with Image.open(osp.join(out, 'images', img['file_name'])) as im:
        assert im.size == (100, 67)
    rook = CHESS_CLASSES.index('white-rook') + 1
    queen = CHESS_CLASSES.index('black-queen') + 1
    king = CHESS_CLASSES.index('black-king') + 1
    assert [(a['image_id'], a['category_id'], a['bbox'])
            for a in coco['annotations']] == [
        (1, rook, [10.0, 5.0, 30.0, 43.0]),   # x 0.25, y 67/268 = 0.25
        (1, queen, [90.0, 50.0, 10.0, 17.0]),  # clipped to 400 x 268 first
        (2, king, [0.0, 0.0, 100.0, 67.0])]
    assert coco['annotations'][0]['area'] == 30.0 * 43.0
    for split in ('train', 'val', 'test'):
        validate_coco(osp.join(out, 'annotations', f'instances_{split}.json'),
                      osp.join(out, 'images'))


def test_convert_is_idempotent_and_rewrites_on_new_args(tmp_path):
    src, out = str(tmp_path / 'src'), str(tmp_path / 'out')
    _write_export(src, TINY)
    first = convert_chess(src, out, short_side=67)
    files = [osp.join(root, n) for root, _, names in os.walk(out)
             for n in names]
    mtimes = {f: os.stat(f).st_mtime_ns for f in files}
    again = convert_chess(src, out, short_side=67)
    assert all(s['skipped'] for s in again.values())
    assert {k: dict(v, skipped=False) for k, v in again.items()} == first
    assert {f: os.stat(f).st_mtime_ns for f in files} == mtimes
    # another short side: everything rewritten, nothing left behind
    convert_chess(src, out, short_side=134)
    assert _load(out, 'train')['images'][0]['width'] == 200
    assert _load(out, 'train')['annotations'][0]['bbox'] == \
        [20.0, 10.0, 60.0, 86.0]
    assert not [n for root, _, names in os.walk(out) for n in names
                if n.endswith('.tmp')]
    # an interrupted rewrite (no manifest) is redone, not skipped
    os.remove(osp.join(out, MANIFEST))
    assert not chess_converted(out)
    assert not any(s['skipped'] for s in
                   convert_chess(src, out, short_side=134).values())
    # a changed source is converted again; a stale image is removed
    _write_export(src, dict(TINY, test=[]))
    os.remove(osp.join(src, 'test', 'test0_jpg.rf.0123abcd.jpg'))
    assert not convert_chess(src, out, short_side=134)['test']['skipped']
    assert os.listdir(osp.join(out, 'images', 'test')) == []


def test_convert_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match='--src') as err:
        find_source(str(tmp_path / 'nowhere'))
    assert 'ChessPiecesv23' in str(err.value)
    src = str(tmp_path / 'src')
    _write_export(src, {'train': [[]], 'valid': [[]]})  # no test/
    with pytest.raises(FileNotFoundError, match='incomplete'):
        convert_chess(src, str(tmp_path / 'out'))
    _write_export(src, TINY)
    with open(osp.join(src, 'test', '_annotations.coco.json')) as f:
        coco = json.load(f)
    coco['categories'].append(dict(id=14, name='white-duck',
                                   supercategory='pieces'))
    with open(osp.join(src, 'test', '_annotations.coco.json'), 'w') as f:
        json.dump(coco, f)
    with pytest.raises(ValueError, match="unknown category 'white-duck'"):
        convert_chess(src, str(tmp_path / 'out'), short_side=67)


def _run_tool_here(monkeypatch, capsys, *args):
    """``tools/convert_chess.py`` in this process (a child process would
    spend seconds importing torch and mmdet again); returns (exit code,
    stdout, stderr)."""
    monkeypatch.setattr(sys, 'argv', ['convert_chess.py', *args])
    code = 0
    try:
        runpy.run_path(osp.join(TOOLS, 'convert_chess.py'),
                       run_name='__main__')
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err + (code if isinstance(code, str) else '')


def test_convert_tool_prints_progress_and_summary(tmp_path, monkeypatch,
                                                  capsys):
    _write_export(str(tmp_path / 'src'), TINY)
    monkeypatch.chdir(tmp_path)
    args = ('--src', 'src', '--out', 'data/chess', '--short-side', '67')
    code, out, _ = _run_tool_here(monkeypatch, capsys, *args)
    assert code == 0
    assert '[chess] train: 2/2 images' in out
    assert "1 'bishop' box dropped" in out
    assert '1 degenerate box dropped;' in out
    code, out, _ = _run_tool_here(monkeypatch, capsys, *args)
    assert code == 0 and 'up to date' in out and '1/2' not in out
    code, _, err = _run_tool_here(monkeypatch, capsys, '--src', 'nowhere')
    assert code and 'ChessPiecesv23' in err


def test_chess_configs_parse_and_match_the_converter():
    from mmengine.config import Config
    data = Config.fromfile(DATASET_CFG)
    cfg = Config.fromfile(PRETRAIN_CFG)
    for c in (data, cfg):
        assert tuple(c.metainfo.classes) == CHESS_CLASSES
        assert c.short_side == DEFAULT_SHORT_SIDE
        for loader in (c.train_dataloader, c.val_dataloader,
                       c.test_dataloader):
            assert tuple(loader.dataset.metainfo.classes) == CHESS_CLASSES
        # DETR heads assert scale_factor: the test pipeline must resize
        assert any(t.type == 'Resize' for t in c.test_pipeline)
    assert cfg.val_evaluator.ann_file == \
        'data/chess/annotations/instances_val.json'
    assert cfg.test_evaluator.ann_file == \
        'data/chess/annotations/instances_test.json'
    assert cfg.model.bbox_head.num_classes == len(CHESS_CLASSES)
    assert cfg.model.neck.in_channels == [40, 112, 320]
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    # a checkpoint every epoch; validation a few times and at the end
    assert cfg.default_hooks.checkpoint.interval == cfg.iters_per_epoch
    assert cfg.default_hooks.checkpoint.save_best == 'coco/bbox_mAP'
    assert cfg.iters_per_epoch == -(-202 // cfg.train_dataloader.batch_size)
    assert 2 <= cfg.train_cfg.max_iters // cfg.train_cfg.val_interval <= 5
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult == \
        0.1
    assert cfg.param_scheduler[-1].type == 'MultiStepLR'


def test_chess_pretraining_model_builds():
    import torch
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    import gslora_det  # noqa: F401
    cfg = Config.fromfile(PRETRAIN_CFG)
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'DeformableDETR'
    assert model.bbox_head.cls_branches[0].out_features == 12
    assert sum(p.numel() for p in model.backbone.parameters()) > 0
    assert isinstance(model.backbone, torch.nn.Module)


@needs_chess
def test_convert_real_chess(tmp_path):
    """The real export at a small short side (the counts do not depend on
    it, and decoding at 1/8 of the size keeps this fast)."""
    out = str(tmp_path / 'chess')
    stats = convert_chess(CHESS_SRC, out, short_side=64)
    assert {s: v['images'] for s, v in stats.items()} == \
        dict(train=202, val=58, test=29)
    assert sum(v['annotations'] for v in stats.values()) == 2870 - 1
    assert stats['train']['fixes'][
        "'bishop' box dropped (not one of the 12 classes)"] == 1
    assert all(v['fixes']['degenerate box dropped'] == 0
               for v in stats.values())
    coco = _load(out, 'val')
    assert [c['name'] for c in coco['categories']] == list(CHESS_CLASSES)
    assert {(i['width'], i['height']) for i in coco['images']} == {(96, 64)}
    assert {a['category_id'] for a in coco['annotations']} == \
        set(range(1, 13))
