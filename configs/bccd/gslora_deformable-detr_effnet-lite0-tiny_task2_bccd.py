# BCCD sequence, task 2 of 2: forget white blood cells (platelets stay
# forgotten; red blood cells are kept).
_base_ = ['../_base_/gslora_forgetting_bccd.py']
forget_task = dict(
    index=2, forget_classes=['WBC'], previously_forgotten=['Platelets'])
