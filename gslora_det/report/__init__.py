"""Evidence that a class is gone: per-task audit manifests, plots (per-class
AP, LoRA group norms, mAP across tasks) and the run summary of a
sequence."""
from gslora_det.report.manifest import (MANIFEST_NAME, build_manifest,
                                        read_manifest, write_manifest)
from gslora_det.report.plots import (plot_group_norms, plot_map_across_tasks,
                                     plot_per_class_ap)
from gslora_det.report.summary import write_run_summary

__all__ = [
    'MANIFEST_NAME', 'build_manifest', 'plot_group_norms',
    'plot_map_across_tasks', 'plot_per_class_ap', 'read_manifest',
    'write_manifest', 'write_run_summary'
]
