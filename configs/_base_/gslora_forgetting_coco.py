# GS-LoRA forgetting on COCO with mmdet's R50 Deformable DETR (44.3 AP),
# with the reference's hyper-parameters (method.md): LoRA rank 8 on both
# FFN linears of all 12 layers, alpha 3e-4, BND 15, AdamW lr 3e-4,
# wd 1e-4, grad clip 0.1, 30 epochs per task, 10 % replay, batch 2 retain
# + 2 forget images per GPU on 8 GPUs, no auxiliary decoder losses.
# Task configs (gslora_deformable-detr_r50_task{1..7}_coco.py) set
# `forget_task` and the task's beta.
_base_ = 'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py'
custom_imports = dict(imports=['gslora_det'], allow_failed_imports=False)

# mmdet's model-zoo checkpoint (see README, "COCO recipe").
load_from = 'checkpoints/deformable-detr_r50_16xb2-50e_coco_20221029_210934-6bc7d21b.pth'  # noqa
data_root = 'data/coco/'
model = dict(
    type='GSLoRADeformableDETR',
    # 'gslora', or a baseline: see gslora_det/baselines/methods.py
    # (`--cfg-options model.method=ewc`).
    method='gslora',
    # The checkpoint holds the backbone: no torchvision download.
    backbone=dict(init_cfg=None),
    lora_cfg=dict(rank=8, alpha=1.0),
    forget_cfg=dict(beta=0.15, bound=15.0, use_aux_loss=False),
    group_lasso_cfg=dict(alpha=3e-4, warmup_iters=0),
    prototype_cfg=dict(enable=False))

forget_task = dict(index=1, forget_classes=[], previously_forgotten=[])

replay = dict(sample_ratio=0.1, k_shot=None, sample_seed=0)
# mmdet's Deformable DETR training pipeline (flip, then multi-scale resize
# or resize-crop-resize), as the reference trains; PackDetInputs also packs
# the split's tags.
_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333),
           (640, 1333), (672, 1333), (704, 1333), (736, 1333), (768, 1333),
           (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=_scales,
                  keep_ratio=True)],
            [
                dict(type='RandomChoiceResize',
                     scales=[(400, 4200), (500, 4200), (600, 4200)],
                     keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range',
                     crop_size=(384, 600), allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=_scales,
                     keep_ratio=True),
            ],
        ]),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'flip', 'flip_direction', 'forget_role',
                   'forget_labels'))
]
_split_common = dict(
    type='ForgetRetainCocoDataset',
    data_root=data_root,
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img='train2017/'),
    pipeline=train_pipeline,
    **replay)
train_dataloader = dict(
    _delete_=True,
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='RetainForgetBatchSampler', forget_per_batch=2),
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(role='retain', **_split_common),
            dict(role='forget', **_split_common),
        ]))
val_evaluator = dict(
    _delete_=True,
    type='ForgettingMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    forget_classes=[],
    previously_forgotten=[])
test_evaluator = val_evaluator

max_epochs = 30
# The Forget* loops fill `forget_task` into the split datasets, the metric
# and the model on every entry point (gslora_det/loops.py).
train_cfg = dict(
    type='ForgetEpochBasedTrainLoop', max_epochs=max_epochs,
    val_interval=max_epochs)
val_cfg = dict(type='ForgetValLoop')
test_cfg = dict(type='ForgetTestLoop')
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=3e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = []  # no LR decay in effect in the reference
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
# BaselineStateHook: θ*/Ω/teacher of the baselines (no-op for GS-LoRA);
# ForgetTaskHook: before/after evaluation, merge, adapter, report;
# SavePredictionsHook: {before,after}_predictions.bbox.json;
# EvalProgressHook: what each evaluation evaluates, progress and ETA;
# TrainCostHook: the memory of one training iteration (train_cost.json).
custom_hooks = [
    dict(type='BaselineStateHook'),
    dict(type='ForgetTaskHook'),
    dict(type='SavePredictionsHook'),
    dict(type='EvalProgressHook'),
    dict(type='TrainCostHook'),
]
auto_scale_lr = dict(enable=False, base_batch_size=32)
