# Built-in sequence, task 1 of 3: forget blue triangles and orange stars.
_base_ = ['../../_base_/gslora_forgetting_shapes.py']
forget_task = dict(
    index=1,
    forget_classes=['blue_triangle', 'orange_star'],
    previously_forgotten=[])
