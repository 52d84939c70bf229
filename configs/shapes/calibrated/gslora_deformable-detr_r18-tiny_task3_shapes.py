# Built-in sequence, task 3 of 3: forget red circles and white hexagons.
# Kept to the end: yellow_diamond, magenta_cross.
_base_ = ['../../_base_/gslora_forgetting_shapes.py']
forget_task = dict(
    index=3,
    forget_classes=['red_circle', 'white_hexagon'],
    previously_forgotten=[
        'blue_triangle', 'orange_star', 'green_square', 'cyan_ring'
    ])
