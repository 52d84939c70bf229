"""The COCO 7 x 10 continual-forgetting protocol of the GS-LoRA reference.

The 80 COCO categories are shuffled with ``numpy.random.seed(123)``; task t
(1..7) forgets ``order[80 - 10t : 90 - 10t]`` (so task 1 takes the last ten),
and the first ten are kept to the end.
"""
from typing import List

import numpy as np
from mmdet.datasets import CocoDataset

COCO_CLASSES = tuple(CocoDataset.METAINFO['classes'])
PROTOCOL_SEED = 123
NUM_TASKS = 7
CLASSES_PER_TASK = 10


def coco_forget_order(seed: int = PROTOCOL_SEED) -> List[str]:
    """The reference's shuffled class order (legacy global numpy RNG,
    exactly as the reference calls it)."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        order = list(range(len(COCO_CLASSES)))
        np.random.shuffle(order)
    finally:
        np.random.set_state(state)
    return [COCO_CLASSES[i] for i in order]


def coco_task_classes(task: int, seed: int = PROTOCOL_SEED) -> List[str]:
    """Forget classes of task ``task`` (1-based)."""
    if not 1 <= task <= NUM_TASKS:
        raise ValueError(f'task must be in 1..{NUM_TASKS}, got {task}')
    order = coco_forget_order(seed)
    n = len(order)
    return order[n - CLASSES_PER_TASK * task:n + CLASSES_PER_TASK -
                 CLASSES_PER_TASK * task]


def coco_previously_forgotten(task: int,
                              seed: int = PROTOCOL_SEED) -> List[str]:
    """Classes forgotten by tasks 1..task-1, in task order."""
    return [c for t in range(1, task) for c in coco_task_classes(t, seed)]
