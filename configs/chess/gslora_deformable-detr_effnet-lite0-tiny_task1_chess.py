# Chess sequence, task 1 of 2: forget the white queen. Its pieces look like
# white kings and bishops, so relabelling shows at once. The one forgetting
# default on the pretraining config: no constant here.
_base_ = ['./deformable-detr_effnet-lite0-tiny_chess.py',
          '../_base_/gslora_default.py']
model = {{_base_.gslora_model}}
train_cfg = {{_base_.gslora_train_cfg}}
val_cfg = dict(type='ForgetValLoop')  # the forgetting metrics on every
test_cfg = dict(type='ForgetTestLoop')  # entry point (mmdet's test.py too)
forget_task = dict(index=1, forget_classes=['white-queen'],
                   previously_forgotten=[])
