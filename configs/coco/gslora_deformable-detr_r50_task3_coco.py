# COCO 7 x 10 protocol, task 3 of 7 (class order: numpy seed 123, see
# gslora_det/data/coco_protocol.py; checked in tests/test_coco_configs.py).
_base_ = ['../_base_/gslora_forgetting_coco.py']
# beta of task 3 in the reference's 7-task COCO run (CVPR version).
model = dict(forget_cfg=dict(beta=0.14))
forget_task = dict(
    index=3,
    forget_classes=[
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
    ])
