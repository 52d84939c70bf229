# Built-in sequence, task 2 of 3: forget green squares and cyan rings.
_base_ = ['../../_base_/gslora_forgetting_shapes.py']
forget_task = dict(
    index=2,
    forget_classes=['green_square', 'cyan_ring'],
    previously_forgotten=['blue_triangle', 'orange_star'])
