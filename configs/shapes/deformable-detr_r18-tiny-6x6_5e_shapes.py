# The built-in shapes detector with 6 encoder + 6 decoder layers (12 LoRA
# groups, as many as the R50 COCO model has) instead of 3 + 3; everything
# else, the schedule included, is ./deformable-detr_r18-tiny_5e_shapes.py.
# mmdet's DeformableDETR sizes the head from decoder.num_layers itself
# (num_pred_layer = num_layers; with_box_refine=False shares the branches).
#   python tools/train.py configs/shapes/deformable-detr_r18-tiny-6x6_5e_shapes.py
_base_ = ['./deformable-detr_r18-tiny_5e_shapes.py']
model = dict(encoder=dict(num_layers=6), decoder=dict(num_layers=6))
