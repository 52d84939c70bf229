from gslora_det.data.forget_split import (ForgetRetainCocoDataset,  # noqa
                                          restrict_instances, sample_images)
from gslora_det.data.retain_forget_sampler import \
    RetainForgetBatchSampler  # noqa: F401
from gslora_det.data.shapes import (SHAPES_CLASS_NAMES,  # noqa: F401
                                    generate_shapes_dataset,
                                    shapes_dataset_ready)
from gslora_det.data.forget_retain_split import ForgetRetainSplit  # noqa
