# BCCD sequence, task 1 of 2: forget platelets (keep red and white cells).
# The one forgetting default on the pretraining config: no constant here.
# The hand-calibrated settings of earlier releases: configs/bccd/calibrated/.
_base_ = ['./deformable-detr_effnet-lite0-tiny_bccd.py',
          '../_base_/gslora_default.py']
model = {{_base_.gslora_model}}
train_cfg = {{_base_.gslora_train_cfg}}
val_cfg = dict(type='ForgetValLoop')  # the forgetting metrics on every
test_cfg = dict(type='ForgetTestLoop')  # entry point (mmdet's test.py too)
forget_task = dict(index=1, forget_classes=['Platelets'],
                   previously_forgotten=[])
