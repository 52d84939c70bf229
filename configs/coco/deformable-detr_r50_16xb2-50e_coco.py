# mmdet's R50 Deformable DETR on COCO (44.3 AP model-zoo checkpoint), with
# the plug-in loaded: the base model of the COCO forgetting protocol.
#   python tools/test.py configs/coco/deformable-detr_r50_16xb2-50e_coco.py \
#       checkpoints/deformable-detr_r50_16xb2-50e_coco_20221029_210934-6bc7d21b.pth
# Add `--forget-classes ...` to measure forgotten vs retained mAP.
_base_ = 'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py'
custom_imports = dict(imports=['gslora_det'], allow_failed_imports=False)
data_root = 'data/coco/'
