"""The training layer: one loop (:func:`fit`) for every task, its optimizer pieces and run directories."""
from .loop import RESUMABLE, fit, resume_config
from .optim import lr_factor, make_optimizer, optimizer_step, param_groups, step_generator
from .rundir import MetricsLog, RunError, RunLock, read_metrics, truncate_metrics

__all__ = ["fit", "resume_config", "RESUMABLE", "lr_factor", "make_optimizer", "optimizer_step", "param_groups",
           "step_generator", "MetricsLog", "RunError", "RunLock", "read_metrics", "truncate_metrics"]
