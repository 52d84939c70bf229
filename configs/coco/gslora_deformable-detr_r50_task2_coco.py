# COCO 7 x 10 protocol, task 2 of 7 (class order: numpy seed 123, see
# gslora_det/data/coco_protocol.py; checked in tests/test_coco_configs.py).
_base_ = ['../_base_/gslora_forgetting_coco.py']
# beta of task 2 in the reference's 7-task COCO run (CVPR version).
model = dict(forget_cfg=dict(beta=0.03))
forget_task = dict(
    index=2,
    forget_classes=[
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
    ])
