"""gslora_det.benchmark.costs on toy modules: the training cost of a
method is measured with the optimiser wrapper its runs use."""
import torch
import torch.nn as nn
from mmengine.logging import MessageHub

from gslora_det.benchmark import costs
from gslora_det.detectors.settings import DEFAULT_GROUP_LASSO_CFG, merged_cfg
from gslora_det.group_lasso import PROX_BOUND_ATTR
from gslora_det.lora import LoRALinear


class ToyDetector(nn.Module):
    """One LoRA group; ``data_preprocessor`` and ``loss`` as a detector's.
    Like the forgetting detectors it refuses to train in proximal mode
    without a proximal wrapper bound to it."""

    def __init__(self, **group_lasso_cfg):
        super().__init__()
        torch.manual_seed(0)
        self.l0 = LoRALinear(4, 3, rank=2)
        self.l0.weight.requires_grad_(False)
        self.group_lasso_cfg = merged_cfg(DEFAULT_GROUP_LASSO_CFG,
                                          group_lasso_cfg, 'group_lasso_cfg')
        self.method_cfg = dict(group_lasso=True)

    def lora_groups(self):
        return {'g0': [self.l0.lora_A, self.l0.lora_B]}

    def data_preprocessor(self, batch, training):
        return batch

    def loss(self, inputs, data_samples):
        if self.group_lasso_cfg['mode'] == 'proximal':
            assert getattr(self, PROX_BOUND_ATTR, False), 'no prox wrapper'
        return dict(loss=self.l0(inputs).pow(2).mean())


def test_training_cost_uses_the_runs_wrapper_past_the_warm_up():
    hub = MessageHub.get_current_instance()
    hub.update_info('iter', 7)
    models = dict(prox=ToyDetector(mode='proximal', alpha=1e3,
                                   warmup_iters=100),
                  plain=ToyDetector())
    batches = [dict(inputs=torch.randn(8, 4), data_samples=None)
               for _ in range(2)]
    out = costs.measure_training(models, batches, lr=1e-2, max_norm=0.1,
                                 rounds=2, steps=1)
    for res in out.values():
        assert res['sec_per_iter'] > 0 and res['memory']
    # the prox ran (past the 100-step warm-up, α far above any gradient) ...
    assert not models['prox'].l0.lora_B.any()
    # ... the plain model took AdamW steps, and the hub's iter is restored
    assert models['plain'].l0.lora_B.any()
    assert hub.get_info('iter') == 7
    hub.update_info('iter', 0)
