# A tiny DINO (mmdet's own `DINO`) for the built-in shapes set, sized like
# ./deformable-detr_r18-tiny.py: ResNet-18 from scratch, 3 feature levels,
# 3 encoder + 3 decoder layers, 50 matching queries, at most 20 denoising
# queries, dropout 0. Two-stage with box refinement (DINO needs both).
# 256 dims, not 128: mmdet 3.3's DinoTransformerDecoder hard-codes a
# 128-feature sine embedding of the reference points (4 x 128 inputs to
# `ref_point_head`, which expects 2 x embed_dims), so only embed_dims=256
# builds a working decoder; the FFN is kept small (2 x 256) instead.
# Same FFN module names as the R50 model, so the default LoRA targets hold
# (`python tools/list_lora_targets.py CONFIG` shows them).
#
# Defined as a variable, not as `model`: a pretrain config sets
# `model = _base_.dino_r18_tiny`, a forgetting config swaps it into the
# shared forgetting base with `model = dict(_base_.dino_r18_tiny, ...)`
# (mmengine refuses two bases that both define `model`).
_dims = 256
_levels = 3
dino_r18_tiny = dict(
    type='DINO',
    num_queries=50,  # matching queries
    with_box_refine=True,
    as_two_stage=True,
    num_feature_levels=_levels,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        type='ChannelMapper',
        in_channels=[128, 256, 512],
        kernel_size=1,
        out_channels=_dims,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=_levels),
    encoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=_dims, num_levels=_levels, dropout=0.0,
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=_dims, feedforward_channels=2 * _dims,
                ffn_drop=0.0))),
    decoder=dict(
        num_layers=3,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=_dims, num_heads=8, dropout=0.0,
                batch_first=True),
            cross_attn_cfg=dict(
                embed_dims=_dims, num_levels=_levels, dropout=0.0,
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=_dims, feedforward_channels=2 * _dims,
                ffn_drop=0.0)),
        post_norm_cfg=None),
    positional_encoding=dict(
        num_feats=_dims // 2, normalize=True, offset=0.0, temperature=20),
    bbox_head=dict(
        type='DINOHead',
        num_classes=8,
        embed_dims=_dims,
        sync_cls_avg_factor=True,
        loss_cls=dict(
            type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=20)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=50))
