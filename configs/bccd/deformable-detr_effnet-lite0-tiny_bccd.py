# Pretraining of the tiny Deformable DETR with an ImageNet EfficientNet-Lite0
# backbone on BCCD (3 classes, 292 train / 72 val photos, 256-px short side).
#   python tools/convert_bccd.py
#   python tools/train.py configs/bccd/deformable-detr_effnet-lite0-tiny_bccd.py
# or everything at once: python benchmarks/bccd.py
_base_ = [
    '../_base_/datasets/bccd_detection.py',
    '../_base_/models/deformable-detr_effnet-lite0-tiny.py',
    'mmdet::_base_/default_runtime.py',
]

# Iteration-based so that the run length is set in steps of a known CPU
# cost: a checkpoint every epoch (37 steps of 8 photos) so that an
# interrupted run resumes, validation every 5 epochs (~20 s each) and at
# the end. 30 epochs = 1,110 steps, sized for <= 60 min on 2 cores at
# ~2.5-3 s a step (mAP measured on a similar recipe: 0.11 after 13 min,
# 0.27 after 29, 0.50 after 64).
iters_per_epoch = 37
max_epochs = 30
max_iters = iters_per_epoch * max_epochs
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={
            # the pretrained backbone moves 10x slower than the new layers
            'backbone': dict(lr_mult=0.1),
            'sampling_offsets': dict(lr_mult=0.1),
            'reference_points': dict(lr_mult=0.1)
        }))
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters,
    val_interval=5 * iters_per_epoch)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# NOTE: the milestone is absolute; `--cfg-options train_cfg.max_iters=N`
# does not move it (a run shorter than the milestone keeps the full LR).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=100),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[int(max_iters * 0.85)], gamma=0.1)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=iters_per_epoch, max_keep_ckpts=2,
                    save_best='coco/bbox_mAP', rule='greater'))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=8)
