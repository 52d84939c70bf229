# BCCD sequence, task 2 of 2: forget white blood cells (platelets stay
# forgotten; red blood cells are kept).
_base_ = ['./deformable-detr_effnet-lite0-tiny_bccd.py',
          '../_base_/gslora_default.py']
model = {{_base_.gslora_model}}
train_cfg = {{_base_.gslora_train_cfg}}
val_cfg = dict(type='ForgetValLoop')  # the forgetting metrics on every
test_cfg = dict(type='ForgetTestLoop')  # entry point (mmdet's test.py too)
forget_task = dict(index=2, forget_classes=['WBC'],
                   previously_forgotten=['Platelets'])
