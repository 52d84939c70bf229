# Built-in sequence, task 1 of 3: forget blue triangles and orange stars.
# The one forgetting default on the detector's own config: no constant here
# (configs/_base_/gslora_default.py). The hand-calibrated constants of
# earlier releases: configs/shapes/calibrated/.
_base_ = ['./deformable-detr_r18-tiny_5e_shapes.py',
          '../_base_/gslora_default.py']
model = {{_base_.gslora_model}}
train_cfg = {{_base_.gslora_train_cfg}}
val_cfg = dict(type='ForgetValLoop')  # the forgetting metrics on every
test_cfg = dict(type='ForgetTestLoop')  # entry point (mmdet's test.py too)
forget_task = dict(index=1, forget_classes=['blue_triangle', 'orange_star'],
                   previously_forgotten=[])
