"""ebtkit: Energy-Based Transformers (Gladstone et al., 2025) in plain PyTorch.

Layers, bottom to top (each imports only the ones below it):
``core`` (configs, the thinking loop and recipe, layers, models, checkpoint I/O) → ``data`` → ``eval``
(inference policies, metrics, generation) → ``tasks`` (the task table, ``load``/``save``) → ``training``
(the one loop, ``fit``) → ``commands`` (the ``ebt`` CLI).
"""
from .core import __version__
from .core.config import DataConfig, ModelConfig, RunConfig, ThinkingConfig, TrainConfig, PRESETS
from .core.config import preset
from .core.models import build, build_model
from .core.recipe import ThinkingSpec
from .core.thinking import EnergyModel, StepSize, Trajectory, is_energy_model, think
from .eval.inference import Policy, think_text
from .tasks import TASKS, Bundle, load, save
from .tasks.hub import from_pretrained, push_to_hub, save_pretrained
from .training import fit

__all__ = ["build", "build_model", "load", "save", "from_pretrained", "save_pretrained", "push_to_hub", "Bundle",
           "fit", "TASKS", "think_text", "think", "Policy",
           "ThinkingSpec", "StepSize", "Trajectory", "EnergyModel", "is_energy_model", "ModelConfig",
           "ThinkingConfig", "TrainConfig", "DataConfig", "RunConfig", "preset", "PRESETS", "__version__"]
