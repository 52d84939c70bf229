# A tiny Deformable DETR (mmdet's own `DeformableDETR`) that trains from
# scratch on 2 CPU cores: ResNet-18 without pretrained weights, 3 feature
# levels, 3 encoder + 3 decoder layers of 128 dims, 50 queries. Dropout is
# off everywhere (mmcv's MultiScaleDeformableAttention defaults to 0.1): it
# costs 15-20 % of CPU time, the synthetic set needs no regularisation, and
# without it a resumed run replays an uninterrupted one exactly (mmengine
# checkpoints do not hold the torch RNG state). Same module names as the R50 model, so the LoRA targets
# (`{encoder,decoder}.layers.{i}.ffn.layers.{0.0,1}`) are the same.
embed_dims = 128
num_levels = 3
num_classes = 8
model = dict(
    type='DeformableDETR',
    num_queries=50,
    num_feature_levels=num_levels,
    with_box_refine=False,
    as_two_stage=False,
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
        out_channels=embed_dims,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=num_levels),
    encoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(  # MultiScaleDeformableAttention
                embed_dims=embed_dims, num_levels=num_levels, dropout=0.0,
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=embed_dims, feedforward_channels=4 * embed_dims,
                ffn_drop=0.0))),
    decoder=dict(
        num_layers=3,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=embed_dims, num_heads=8, dropout=0.0,
                batch_first=True),
            cross_attn_cfg=dict(  # MultiScaleDeformableAttention
                embed_dims=embed_dims, num_levels=num_levels, dropout=0.0,
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=embed_dims, feedforward_channels=4 * embed_dims,
                ffn_drop=0.0)),
        post_norm_cfg=None),
    positional_encoding=dict(
        num_feats=embed_dims // 2, normalize=True, offset=-0.5),
    bbox_head=dict(
        type='DeformableDETRHead',
        embed_dims=embed_dims,
        num_classes=num_classes,
        sync_cls_avg_factor=True,
        loss_cls=dict(
            type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
            loss_weight=2.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=50))
