# COCO 7 x 10 protocol, task 1 of 7, on mmdet's DETR R50 (39.9 AP;
# base model: ./detr_r50_8xb2-150e_coco.py, mmdet model-zoo weights).
# The forgetting settings are the Deformable DETR's
# (../_base_/gslora_forgetting_coco.py, the reference's constants); only
# the model type and architecture are swapped. Not calibrated for this
# detector: beta is the reference's task-1 value for Deformable DETR.
_base_ = [
    '../_base_/gslora_forgetting_coco.py',
    '../_base_/models/detr_r50.py',
]
load_from = 'checkpoints/detr_r50_8xb2-150e_coco_20221023_153551-436d03e8.pth'  # noqa
model = dict(
    _base_.detr_r50,
    _delete_=True,
    type='GSLoRADETR',
    method=_base_.model.method,
    lora_cfg=_base_.model.lora_cfg,
    forget_cfg=dict(_base_.model.forget_cfg, beta=0.015),
    group_lasso_cfg=_base_.model.group_lasso_cfg,
    prototype_cfg=_base_.model.prototype_cfg)
forget_task = dict(
    index=1,
    forget_classes=[
        'microwave',
        'skateboard',
        'umbrella',
        'banana',
        'sports ball',
        'book',
        'apple',
        'couch',
        'horse',
        'keyboard',
    ],
    previously_forgotten=[])
