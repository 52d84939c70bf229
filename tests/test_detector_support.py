"""Which detectors the plug-in accepts (gslora_det/detectors/support.py)."""
import os.path as osp

import pytest
from mmengine.config import Config

from gslora_det.config_checks import ConfigError
from gslora_det.detectors.support import (GSLORA_TYPE_OF, GSLORA_TYPES,
                                          SUPPORTED_DETECTORS,
                                          check_supported_detector)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_supported_lists_the_gslora_types_and_the_stock_types_they_wrap():
    from mmdet.registry import MODELS

    import gslora_det  # noqa: F401  (registers the GS-LoRA detectors)
    assert set(SUPPORTED_DETECTORS) == {
        'GSLoRADeformableDETR', 'GSLoRADINO', 'GSLoRADETR',
        'GSLoRAConditionalDETR', 'DeformableDETR', 'DINO', 'DETR',
        'ConditionalDETR'
    }
    for gslora, stock in GSLORA_TYPES.items():
        assert GSLORA_TYPE_OF[stock] == gslora
        # each GS-LoRA type is registered and is the stock class underneath
        assert issubclass(MODELS.get(gslora), MODELS.get(stock))


@pytest.mark.parametrize('name', [
    'GSLoRADeformableDETR', 'GSLoRADINO', 'GSLoRADETR',
    'GSLoRAConditionalDETR', 'DeformableDETR', 'DINO', 'DETR',
    'ConditionalDETR', 'mmdet.DeformableDETR'
])
def test_accepts_gslora_and_stock_detr_family_types(name):
    check_supported_detector(dict(type=name))


@pytest.mark.parametrize('name', ['FasterRCNN', 'RTMDet', 'RetinaNet',
                                  'NoSuchDetector'])
def test_refuses_other_detectors_naming_type_supported_and_fix(name):
    with pytest.raises(ConfigError) as err:
        check_supported_detector(dict(type=name))
    msg = str(err.value)
    assert f"model.type='{name}'" in msg
    for supported in GSLORA_TYPES:
        assert supported in msg
    assert "wraps mmdet's DeformableDETR" in msg
    assert ("set model.type='GSLoRADeformableDETR' and inherit a Deformable "
            'DETR config') in msg


def test_refuses_a_model_without_type():
    with pytest.raises(ConfigError, match='model.type is not set'):
        check_supported_detector({})
    with pytest.raises(ConfigError, match='no `model` dict'):
        check_supported_detector(None)


def test_real_mmdet_configs():
    import mmdet
    mim = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
    # mmdet's own Faster R-CNN and RTMDet configs are refused ...
    for path, name in [('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                        'FasterRCNN'),
                       ('rtmdet/rtmdet_tiny_8xb32-300e_coco.py', 'RTMDet')]:
        model = Config.fromfile(osp.join(mim, path)).model
        with pytest.raises(ConfigError, match=f"model.type='{name}'"):
            check_supported_detector(model)
    # ... and this repository's GS-LoRA configs, one per detector, pass
    for name in ['coco/gslora_deformable-detr_r50_task1_coco.py',
                 'coco/gslora_dino-4scale_r50_task1_coco.py',
                 'coco/gslora_detr_r50_task1_coco.py',
                 'shapes/gslora_conditional-detr_r18-tiny_task1_shapes.py']:
        model = Config.fromfile(osp.join(REPO, 'configs', name)).model
        assert model.type in GSLORA_TYPES
        check_supported_detector(model)


def test_accepts_a_registered_subclass_of_a_gslora_detector():
    from mmdet.registry import MODELS

    from gslora_det.detectors import GSLoRADeformableDETR

    class MyGSLoRADeformableDETR(GSLoRADeformableDETR):
        pass

    name = 'TestOnlyGSLoRASubclass'
    MODELS.register_module(name=name, module=MyGSLoRADeformableDETR,
                           force=True)
    try:
        check_supported_detector(dict(type=name))
    finally:
        MODELS._module_dict.pop(name, None)
    with pytest.raises(ConfigError):
        check_supported_detector(dict(type=name))
