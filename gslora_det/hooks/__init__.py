from gslora_det.hooks.forget_task_hook import ForgetTaskHook  # noqa: F401
