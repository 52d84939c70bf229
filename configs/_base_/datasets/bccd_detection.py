# BCCD blood-cell photos (640 x 480 px, 3 classes) in COCO format, made by
#   python tools/convert_bccd.py --src ../shared/data/bccd --out data/bccd
# (train = BCCD's trainval list, 292 images; val = its test list, 72).
# Images are read through the `data/bccd/images` symlink the converter makes.
# Another location: `--cfg-options data_root=...` does NOT move the paths
# below (resolved at parse time); convert with `--out` into data/bccd or
# edit `data_root` here.
custom_imports = dict(imports=['gslora_det'], allow_failed_imports=False)

dataset_type = 'CocoDataset'
data_root = 'data/bccd/'
# Category-id order; never a subset (mmdet would renumber the labels).
classes = ('RBC', 'WBC', 'Platelets')
metainfo = dict(classes=classes)
# 256-px short side (341 x 256): cells stay >= ~10 px, and a CPU step at
# batch 8 stays near 1.5 s with the EfficientNet-Lite0 backbone.
short_side = 256
image_scale = (1333, short_side)
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    # Smears have no up or left: both flips are label-preserving.
    dict(type='RandomFlip', prob=[0.25, 0.25],
         direction=['horizontal', 'vertical']),
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
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
