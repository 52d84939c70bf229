from gslora_det.hooks.baseline_state_hook import BaselineStateHook  # noqa
from gslora_det.hooks.eval_progress_hook import EvalProgressHook  # noqa: F401
from gslora_det.hooks.forget_task_hook import ForgetTaskHook  # noqa: F401
from gslora_det.hooks.save_predictions_hook import SavePredictionsHook  # noqa
from gslora_det.hooks.train_cost_hook import TrainCostHook  # noqa: F401
from gslora_det.hooks.forget_controller_hook import ForgetControllerHook  # noqa: F401,E501
