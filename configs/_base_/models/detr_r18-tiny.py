# A tiny DETR (mmdet's own `DETR`) for the built-in shapes set, sized like
# ./deformable-detr_r18-tiny.py: ResNet-18 from scratch, one feature level
# (stride 32), 3 encoder + 3 decoder layers of 128 dims, 50 queries,
# dropout 0. Same FFN module names as the R50 model, so the default LoRA
# targets hold. DETR converges slowly: on shapes this is a plumbing model.
#
# Defined as a variable, not as `model` (see ./dino_r18-tiny.py for why).
_dims = 128
detr_r18_tiny = dict(
    type='DETR',
    num_queries=50,
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
        out_indices=(3, ),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        type='ChannelMapper',
        in_channels=[512],
        kernel_size=1,
        out_channels=_dims,
        act_cfg=None,
        norm_cfg=None,
        num_outs=1),
    encoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=_dims, num_heads=8, dropout=0.0,
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=_dims, feedforward_channels=4 * _dims, num_fcs=2,
                ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True)))),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=_dims, num_heads=8, dropout=0.0,
                batch_first=True),
            cross_attn_cfg=dict(
                embed_dims=_dims, num_heads=8, dropout=0.0,
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=_dims, feedforward_channels=4 * _dims, num_fcs=2,
                ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True))),
        return_intermediate=True),
    positional_encoding=dict(num_feats=_dims // 2, normalize=True),
    bbox_head=dict(
        type='DETRHead',
        num_classes=8,
        embed_dims=_dims,
        loss_cls=dict(
            type='CrossEntropyLoss', bg_cls_weight=0.1, use_sigmoid=False,
            loss_weight=1.0, class_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=1.),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=50))
