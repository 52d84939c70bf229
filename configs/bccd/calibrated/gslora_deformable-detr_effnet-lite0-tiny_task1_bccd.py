# BCCD sequence, task 1 of 2: forget platelets (keep red and white cells).
_base_ = ['../../_base_/gslora_forgetting_bccd.py']
forget_task = dict(
    index=1, forget_classes=['Platelets'], previously_forgotten=[])
