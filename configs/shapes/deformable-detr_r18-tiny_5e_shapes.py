# Pretraining of the built-in detector on the built-in shapes set.
#   python tools/make_shapes.py
#   python tools/train.py configs/shapes/deformable-detr_r18-tiny_5e_shapes.py
#   python tools/test.py  configs/shapes/deformable-detr_r18-tiny_5e_shapes.py \
#       work_dirs/deformable-detr_r18-tiny_5e_shapes/epoch_5.pth
_base_ = [
    '../_base_/datasets/shapes_detection.py',
    '../_base_/models/deformable-detr_r18-tiny.py',
    'mmdet::_base_/default_runtime.py',
]

# From-scratch training needs a larger LR than fine-tuning the R50 (2e-4)
# and a short warm-up; the LR drops 10x for the last epoch.
max_epochs = 5
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={
            'sampling_offsets': dict(lr_mult=0.1),
            'reference_points': dict(lr_mult=0.1)
        }))
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# NOTE: milestones are absolute epochs; `--cfg-options max_epochs=N` does
# not move them (mmengine resolves variables at parse time).
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
