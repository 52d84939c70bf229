# COCO 7 x 10 protocol, task 1 of 7, on mmdet's DINO 4-scale R50 (49.0 AP;
# base model: ./dino-4scale_r50_8xb2-12e_coco.py, mmdet model-zoo weights).
# The forgetting settings are the Deformable DETR's
# (../_base_/gslora_forgetting_coco.py, the reference's constants); only
# the model type and architecture are swapped. Not calibrated for this
# detector: beta is the reference's task-1 value for Deformable DETR.
_base_ = [
    '../_base_/gslora_forgetting_coco.py',
    '../_base_/models/dino-4scale_r50.py',
]
load_from = 'checkpoints/dino-4scale_r50_8xb2-12e_coco_20221202_182705-55b2bba2.pth'  # noqa
model = dict(
    _base_.dino_4scale_r50,
    _delete_=True,
    type='GSLoRADINO',
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
