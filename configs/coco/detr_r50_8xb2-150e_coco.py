# mmdet's DETR R50 (39.9 AP) on COCO, with the plug-in loaded: the base
# model of ./gslora_detr_r50_task1_coco.py.
#   python tools/test.py configs/coco/detr_r50_8xb2-150e_coco.py \
#       checkpoints/detr_r50_8xb2-150e_coco_20221023_153551-436d03e8.pth
# Add `--forget-classes ...` to measure forgotten vs retained mAP.
_base_ = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'
custom_imports = dict(imports=['gslora_det'], allow_failed_imports=False)
data_root = 'data/coco/'
