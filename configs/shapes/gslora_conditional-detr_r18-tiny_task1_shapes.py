# Built-in sequence, task 1 of 3, on the tiny Conditional DETR (base
# model: ./conditional-detr_r18-tiny_5e_shapes.py): forget blue triangles
# and orange stars.
# The shared forgetting base is the Deformable DETR's; only the model type
# and architecture are swapped, the GS-LoRA settings are the base's (not
# calibrated for this detector).
_base_ = [
    '../_base_/gslora_forgetting_shapes.py',
    '../_base_/models/conditional-detr_r18-tiny.py',
]
model = dict(
    _base_.conditional_detr_r18_tiny,
    _delete_=True,
    type='GSLoRAConditionalDETR',
    method=_base_.model.method,
    lora_cfg=_base_.model.lora_cfg,
    forget_cfg=_base_.model.forget_cfg,
    group_lasso_cfg=_base_.model.group_lasso_cfg,
    prototype_cfg=_base_.model.prototype_cfg)
forget_task = dict(
    index=1,
    forget_classes=['blue_triangle', 'orange_star'],
    previously_forgotten=[])
