"""Python API: forget classes and move adapters without the command line.

Example (from the repository root, after ``make demo``)::

    from mmdet.apis import DetInferencer
    from gslora_det.apis import forget_sequence, merge_adapter

    base, run = 'work_dirs/demo/base.pth', 'work_dirs/api_demo'
    reports = forget_sequence(
        [['blue_triangle', 'orange_star'], ['green_square', 'cyan_ring']],
        base, run, config='configs/shapes/'
        'gslora_deformable-detr_r18-tiny_task1_shapes.py')
    print([round(r['h_mean'], 3) for r in reports])
    state = merge_adapter(base, f'{run}/task_1/adapter')  # = its merged.pth
    detector = DetInferencer(
        'configs/shapes/deformable-detr_r18-tiny_5e_shapes.py',
        f'{run}/task_2/merged.pth', device='cpu', show_progress=False)
    result = detector('data/shapes/val/000000.png')
    print(result['predictions'][0]['labels'][:5])

Each ``task_<k>/`` holds ``merged.pth``, a plain mmdet checkpoint of the
base architecture (so mmdet's ``DetInferencer`` takes it with the *base*
model's config, no plug-in needed; its ``dataset_meta`` names the classes),
and ``adapter/``, the task's LoRA alone (:mod:`gslora_det.adapter`).
``show_progress=False`` keeps the inferencer quiet; it names its visualizer
apart from the tasks' own, which :func:`forget` names uniquely per task.
"""
from gslora_det.apis.adapters import (add_adapter, merge_adapter,
                                      merge_checkpoint)
from gslora_det.apis.forgetting import forget, forget_sequence

__all__ = ['forget', 'forget_sequence', 'add_adapter', 'merge_adapter',
           'merge_checkpoint']
