# A tiny Conditional DETR (mmdet's own `ConditionalDETR`): the tiny DETR of
# ./detr_r18-tiny.py with Conditional DETR's decoder attention and focal
# classification loss, as mmdet's conditional-detr_r50 config derives it
# from DETR's. 256 dims with a 2 x 256 FFN, not 128: mmdet 3.3's
# Conditional DETR decoder hard-codes a 128-feature sine embedding of the
# reference points, so only embed_dims=256 builds a working decoder.
#
# Defined as a variable, not as `model` (see ./dino_r18-tiny.py for why).
_base_ = ['./detr_r18-tiny.py']
_dims = 256
_ffn = dict(
    embed_dims=_dims, feedforward_channels=2 * _dims, num_fcs=2, ffn_drop=0.0,
    act_cfg=dict(type='ReLU', inplace=True))
conditional_detr_r18_tiny = dict(
    _base_.detr_r18_tiny,
    type='ConditionalDETR',
    neck=dict(_base_.detr_r18_tiny.neck, out_channels=_dims),
    encoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=_dims, num_heads=8, dropout=0.0,
                batch_first=True),
            ffn_cfg=_ffn)),
    positional_encoding=dict(num_feats=_dims // 2, normalize=True),
    decoder=dict(
        num_layers=3,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=_dims, num_heads=8, attn_drop=0.0,
                cross_attn=False),
            cross_attn_cfg=dict(
                embed_dims=_dims, num_heads=8, attn_drop=0.0,
                cross_attn=True),
            ffn_cfg=_ffn)),
    bbox_head=dict(
        type='ConditionalDETRHead',
        num_classes=8,
        embed_dims=_dims,
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
            ])))
