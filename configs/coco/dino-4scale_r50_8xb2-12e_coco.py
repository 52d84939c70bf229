# mmdet's DINO 4-scale R50 (49.0 AP) on COCO, with the plug-in loaded: the base
# model of ./gslora_dino-4scale_r50_task1_coco.py.
#   python tools/test.py configs/coco/dino-4scale_r50_8xb2-12e_coco.py \
#       checkpoints/dino-4scale_r50_8xb2-12e_coco_20221202_182705-55b2bba2.pth
# Add `--forget-classes ...` to measure forgotten vs retained mAP.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['gslora_det'], allow_failed_imports=False)
data_root = 'data/coco/'
