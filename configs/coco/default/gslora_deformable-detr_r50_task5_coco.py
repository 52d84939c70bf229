# COCO 7 x 10 protocol, task 5 of 7, with the one forgetting default
# (configs/_base_/gslora_default.py) on the COCO detector config: the same
# class lists as the reference reproduction (../gslora_deformable-detr_r50_
# task5_coco.py), no per-task beta, the controller decides.
_base_ = ['../deformable-detr_r50_16xb2-50e_coco.py',
          '../../_base_/gslora_default.py']
model = {{_base_.gslora_model}}
train_cfg = {{_base_.gslora_train_cfg}}
val_cfg = dict(type='ForgetValLoop')  # the forgetting metrics on every
test_cfg = dict(type='ForgetTestLoop')  # entry point (mmdet's test.py too)
# mmdet's model-zoo checkpoint (README, "COCO recipe"); the sequence tool
# passes the previous task's merged.pth instead.
load_from = 'checkpoints/deformable-detr_r50_16xb2-50e_coco_20221029_210934-6bc7d21b.pth'  # noqa
forget_task = dict(
    index=5,
    forget_classes=[
        'cow',
        'toaster',
        'train',
        'laptop',
        'carrot',
        'cat',
        'sink',
        'sheep',
        'bench',
        'zebra',
    ],
    previously_forgotten=[
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
        'truck',
        'sandwich',
        'toilet',
        'chair',
        'scissors',
        'bottle',
        'car',
        'cell phone',
        'cake',
        'orange',
        'baseball bat',
        'tie',
        'skis',
        'bear',
        'kite',
        'tennis racket',
        'hot dog',
        'suitcase',
        'baseball glove',
        'cup',
        'fire hydrant',
        'broccoli',
        'stop sign',
        'person',
        'bus',
        'fork',
        'motorcycle',
        'wine glass',
        'parking meter',
        'donut',
    ])
