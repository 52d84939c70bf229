# The tiny shapes detector with timm's ResNet-18 (gslora_det.models.
# TimmBackbone) instead of mmdet's: same strides (8/16/32) and channels
# (128/256/512), so the neck and transformer are unchanged. From scratch,
# like the mmdet ResNet version; for pretrained weights add
# `checkpoint_path='<local timm state dict>'` (never downloaded).
#   python tools/train.py configs/shapes/deformable-detr_timm-resnet18-tiny_5e_shapes.py
_base_ = ['./deformable-detr_r18-tiny_5e_shapes.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='resnet18',
        out_indices=(2, 3, 4),  # strides 8/16/32 -> 128/256/512 channels
        frozen_stages=-1,
        norm_eval=False),
    neck=dict(in_channels=[128, 256, 512]))
