# Pretraining of the tiny Deformable DETR with an ImageNet EfficientNet-Lite0
# backbone on the chess pieces (12 classes, 202 train / 58 val photos,
# 320-px short side).
#   python tools/convert_chess.py
#   python tools/train.py \
#       configs/chess/deformable-detr_effnet-lite0-tiny_chess.py
# (benchmarks and the forgetting sequence: gslora_det.pretrain.pretrain_once,
# which publishes <work_dir>/base.pth).
_base_ = [
    '../_base_/datasets/chess_detection.py',
    '../_base_/models/deformable-detr_effnet-lite0-tiny.py',
    'mmdet::_base_/default_runtime.py',
]
model = dict(bbox_head=dict(num_classes=12))
# Batch 4, not BCCD's 8: cheaper per photo here, and twice the updates
# (measurements below).
train_dataloader = dict(batch_size=4)

# Iteration-based so that the run length is set in steps of a known CPU
# cost: a checkpoint every epoch (51 steps of 4 photos: 50 full batches
# and the remaining 2) so that an interrupted run resumes, validation
# every 5 epochs (58 photos, ~20 s of CPU) and at the end.
# Measured (tools/train.py, 1 thread: OMP_NUM_THREADS=1 MKL_NUM_THREADS=1,
# on the 2-core AMD EPYC VM while other trainings kept the load average at
# 5-7): 3.2 s of CPU time a step at batch 4 (0.8 s a photo; batch 8 cost
# 8.5 s, 1.06 s a photo, so batch 4 also gives twice the updates for the
# same time), 5 s of wall time a step under that load. The CPU time is what
# an idle machine takes on 1 thread: 14 epochs = 714 steps ~ 38 min + 3
# validations ~ 40 min on 1 thread; less on 2 idle cores; ~60 min under
# the load above. Of a step, the deformable encoder over the ~3,150 tokens
# of a 478 x 320 image is ~2/3 (forward and backward), the backbone ~1/5.
iters_per_epoch = 51
max_epochs = 14
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
auto_scale_lr = dict(base_batch_size=4)
