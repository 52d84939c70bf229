# Pretraining of the tiny Conditional DETR on the built-in shapes set,
# the base model of ./gslora_conditional-detr_r18-tiny_task1_shapes.py.
# Schedule and LR are the tiny Deformable DETR's
# (./deformable-detr_r18-tiny_5e_shapes.py), not tuned for this detector.
#   python tools/train.py configs/shapes/conditional-detr_r18-tiny_5e_shapes.py
_base_ = [
    '../_base_/datasets/shapes_detection.py',
    '../_base_/models/conditional-detr_r18-tiny.py',
    'mmdet::_base_/default_runtime.py',
]
model = _base_.conditional_detr_r18_tiny

max_epochs = 5
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=1.0, norm_type=2))
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[4], gamma=0.1)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=16)
