# Built-in sequence, task 1 of 3, on the 6 + 6-layer shapes detector
# (./deformable-detr_r18-tiny-6x6_5e_shapes.py: 12 LoRA groups). Same
# classes as ./gslora_deformable-detr_r18-tiny_task1_shapes.py; the one
# forgetting default, no constant here.
_base_ = ['./deformable-detr_r18-tiny-6x6_5e_shapes.py',
          '../_base_/gslora_default.py']
model = {{_base_.gslora_model}}
train_cfg = {{_base_.gslora_train_cfg}}
val_cfg = dict(type='ForgetValLoop')  # the forgetting metrics on every
test_cfg = dict(type='ForgetTestLoop')  # entry point (mmdet's test.py too)
forget_task = dict(index=1, forget_classes=['blue_triangle', 'orange_star'],
                   previously_forgotten=[])
