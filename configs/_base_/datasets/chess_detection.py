# Chess pieces (Roboflow "Chess Pieces v23", public domain; 12 classes) in
# COCO format, made by
#   python tools/convert_chess.py --src ../shared/data/chess --out data/chess
# (train 202 / val 58 / test 29 photos: the export's train / valid / test).
# The converter writes the photos already downscaled from 2048 x 1371 to a
# 320-px short side (478 x 320; pieces ~27 x 40 px, smallest ~17 x 27):
# decoding the 2048-px originals in every step would cost more than the
# step itself on a CPU. `short_side` below must match its --short-side.
# Another location: `--cfg-options data_root=...` does NOT move the paths
# below (resolved at parse time); convert with `--out` into data/chess or
# edit `data_root` here.
custom_imports = dict(imports=['gslora_det'], allow_failed_imports=False)

dataset_type = 'CocoDataset'
data_root = 'data/chess/'
# Category-id order of the converted files (gslora_det.data.chess.
# CHESS_CLASSES: white then black, king queen bishop knight rook pawn);
# never a subset (mmdet would renumber the labels).
classes = ('white-king', 'white-queen', 'white-bishop', 'white-knight',
           'white-rook', 'white-pawn', 'black-king', 'black-queen',
           'black-bishop', 'black-knight', 'black-rook', 'black-pawn')
metainfo = dict(classes=classes)
short_side = 320
# The images are already this size: the Resize is a no-op kept because the
# DETR heads need `scale_factor` in the metainfo.
image_scale = (1333, short_side)
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    # A mirrored piece is the same piece (colour and kind survive); no
    # vertical flip: pieces stand upright in every photo.
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
# The export's own test split (29 photos, 13 pieces a photo on average;
# train has 10.4 -- half its photos show a single piece, a fifth a full
# board of 32 -- and val 6.7).
test_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_test.json',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
test_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_test.json',
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
